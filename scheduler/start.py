"""Starting placed replicas: their containers created and started on their nodes.

Nothing is started twice: a replica's container name is derived from its id, so after a
crash or a call whose answer never came, the start looks the container up by name and
adopts it instead of making another. A node that does not answer keeps the replica
``starting`` for the next pass, up to ``START_ATTEMPTS`` passes.
"""

import logging

from peewee import JOIN

from portal.models import Node, Pool, Replica, Subtask, Task, utcnow
from portal.reasons import stored
from portal.tasks import refresh_state
from scheduler.backend import (
    INSTANCE_LABEL,
    TASK_LABEL,
    ContainerExists,
    EngineBusy,
    NodeUnreachable,
    StartFailed,
    container_name,
)
from scheduler.container_specs import container_specs
from scheduler.follow import follow
from scheduler.renter_images import ensure_image
from scheduler.transitions import transition

log = logging.getLogger(__name__)

START_ATTEMPTS = 5  # passes a start may find its node not answering before the replica fails
STARTS_PER_NODE = 32  # starts per node in one pass: a burst takes a few short passes


def start_placed(backend_for, threads, instance, local_url, host_root, data_root,
                  queue_wait=None):
    """Create and start the containers of placed replicas, at once, up to
    ``STARTS_PER_NODE`` per node, so the pass stays short whatever the burst; returns
    whether placed replicas are left for the next pass.

    ``backend_for(node)`` is the node's backend, ``threads`` the executor its calls run
    in; ``instance``, ``local_url``, ``host_root`` and ``data_root`` are what
    ``container_specs`` needs. ``queue_wait`` (a histogram labelled by pool, or None) gets
    each started replica's time from its creation."""
    replicas = list(Replica.select(Replica, Task, Subtask, Node)
                    .join(Task).switch(Replica).join(Subtask).switch(Replica)
                    .join(Node, JOIN.LEFT_OUTER)
                    .where((Replica.state == "starting") & (Replica.container == ""))
                    .order_by(Replica.id))
    batch, per_node = [], {}
    for replica in replicas:
        per_node[replica.node_id] = per_node.get(replica.node_id, 0) + 1
        if per_node[replica.node_id] <= STARTS_PER_NODE:
            batch.append(replica)
    more = len(batch) < len(replicas)
    replicas = batch
    if not replicas:
        return more
    stopped = [r for r in replicas if r.task.stop_requested or r.task.deleted]
    for replica in stopped:
        transition(replica, "stopped", stored("stopped_before_start", {}))
        refresh_state(replica.task)
    orphans = [r for r in replicas if r not in stopped and r.node_id is None]
    for replica in orphans:
        transition(replica, "lost", stored("node_removed_before_start", {}))
        refresh_state(replica.task)
    starting = [r for r in replicas if r not in stopped and r not in orphans]
    jobs = {}
    specs = container_specs(starting, instance, local_url, host_root, data_root)
    for r, spec in zip(starting, specs, strict=True):
        if isinstance(spec, StartFailed):  # a notebook that cannot be built
            transition(r, "failed", stored("could_not_start", {"detail": str(spec)}))
            refresh_state(r.task)
        else:
            jobs[r.id] = (r, spec)
    nodes = list(Node.select().order_by(Node.ready.desc(), Node.id))  # disabled ones too
    futures = {rid: threads.submit(_start, backend_for(r.node), r.node, spec,
                                   [backend_for(n) for n in nodes if n.id != r.node_id])
               for rid, (r, spec) in jobs.items()}
    pools = dict(Pool.select(Pool.id, Pool.name).tuples()) if queue_wait is not None else {}
    for rid, future in futures.items():
        replica = jobs[rid][0]
        outcome, detail = future.result()
        if outcome == "queued":  # our own queue of calls to the node was too long
            continue
        if outcome == "retry":
            attempts = replica.start_attempts + 1
            if attempts < START_ATTEMPTS:
                Replica.update(start_attempts=attempts).where(Replica.id == rid).execute()
                continue
            transition(replica, "failed", stored("start_no_answer", {
                "node": replica.node.name, "tries": attempts, "detail": str(detail)}))
        elif outcome == "failed":
            transition(replica, "failed", stored("could_not_start", {"detail": str(detail)}))
        else:
            state, seen = detail
            Replica.update(container=container_name(instance, replica.id),
                           last_seen_at=seen).where(Replica.id == rid).execute()
            replica.last_seen_at = seen
            follow(replica, state, seen, instance)
            if queue_wait is not None:
                queue_wait.labels(pools[replica.task.pool_id]).observe(
                    max(0.0, (seen - replica.created_at).total_seconds()))
        refresh_state(replica.task)
    return more


def _start(backend, node, spec, sources=()):
    """Start one replica's container on ``node``, its image first copied there from one of
    ``sources`` (the other nodes' backends) when the node lacks it: ("started", (its state,
    when it was asked for)), ("failed", Podman's message), ("retry", why) when the node did
    not answer, or ("queued", None) when the calls to the node waiting before it took too
    long."""
    try:
        if ensure_image(backend, spec.image, sources):
            log.info("copied %s to %s", spec.image, node.name)
        backend.ensure_network(spec.network, {INSTANCE_LABEL: spec.instance,
                                              TASK_LABEL: str(spec.task)})
        try:
            backend.start(spec)
        except (ContainerExists, NodeUnreachable) as error:
            # Made before a crash, or no answer to the create or the start, which may
            # have happened all the same: look it up by name before deciding anything.
            found = backend.inspect(spec.name)
            if found is None and isinstance(error, NodeUnreachable):
                raise
            if found is None or found.status == "created":
                # Made but never started: it never ran, so making it again starts
                # nothing twice.
                if found is not None:
                    backend.remove(spec.name)
                backend.start(spec)
        seen = utcnow()
        return "started", (backend.inspect(spec.name), seen)
    except StartFailed as error:
        return "failed", str(error)
    except EngineBusy as error:
        log.info("starting %s on %s waits: %s", spec.name, node.name, error)
        return "queued", None
    except Exception as error:  # node trouble: the replica stays starting, retried
        log.warning("starting %s on %s failed: %s", spec.name, node.name, error)
        return "retry", str(error)[:200]
