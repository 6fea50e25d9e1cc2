"""Removing what no replica needs any more, on every node.

``clean_up`` removes the containers of deleted tasks, then each such task's network.
``sweep_orphans`` is the safety net behind it: it lists this instance's containers and
networks on every enabled node (``ContainerBackend.list_ours``, the same listing the
follow step uses) and removes whatever no live replica claims, so nothing leaks
whatever failed before. Removals run in the background; one that fails is logged and
tried again later.
"""

import logging

from portal.models import REPLICA_ENDED, Node, Replica, Task
from scheduler.backend import TASK_LABEL, network_name

log = logging.getLogger(__name__)

LIVE = ("pending", "starting", "running")


def clean_up(backend_for, threads, instance):
    """Remove the containers of deleted tasks, then each such task's network, in
    ``threads``; the replicas forget their containers at once."""
    gone = (Replica.select(Replica, Node).join(Node).switch(Replica).join(Task)
            .where(Task.deleted & (Replica.container != "")
                   & Replica.state.in_(REPLICA_ENDED)))
    by_node = {}
    for replica in gone:
        by_node.setdefault((replica.task_id, replica.node), []).append(replica.container)
    for (task_id, node), containers in by_node.items():
        threads.submit(_remove_all, backend_for(node), containers,
                       network_name(instance, task_id))
        Replica.update(container="").where(
            (Replica.task == task_id) & (Replica.node == node.id)).execute()


def sweep_orphans(backend_for, threads, instance):
    """On every enabled node, remove this instance's containers and networks that nothing
    claims, logging each (a removal, a create whose answer never came, a task deleted
    while its node was down).

    A container is claimed by its replica while that replica is pending, starting or
    running, and after it ended while the container has exited (its logs stay readable)
    until its task is deleted. One that still runs after its replica ended (a lost
    replica's, on a node that answers again) is stopped, not removed, for its logs.
    A task's network is claimed until the task is deleted.
    """
    # One node per Podman service: a Slurm cluster's nodes may share one.
    nodes = list({node.url: node for node in Node.select().where(Node.enabled)}.values())
    listings = {node.id: threads.submit(_listing, backend_for(node), node, instance)
                for node in nodes}
    found = {node.id: listings[node.id].result() for node in nodes}
    replica_ids = {c.replica for containers, _ in found.values() for c in containers
                   if c.replica is not None}
    task_ids = {int(labels[TASK_LABEL]) for _, networks in found.values()
                for labels in networks.values() if labels.get(TASK_LABEL, "").isdigit()}
    replicas = {rid: (state, deleted) for rid, state, deleted in
                Replica.select(Replica.id, Replica.state, Task.deleted).join(Task)
                .where(Replica.id.in_(list(replica_ids))).tuples()}
    live_tasks = {tid for (tid,) in Task.select(Task.id).where(
        Task.id.in_(list(task_ids)) & ~Task.deleted).tuples()}
    for node in nodes:
        containers, networks = found[node.id]
        verdicts = {c.handle: verdict(c, replicas.get(c.replica)) for c in containers}
        nets = [name for name, labels in networks.items()
                if labels.get(TASK_LABEL, "").isdigit()
                and int(labels[TASK_LABEL]) not in live_tasks]
        if nets or any(verdicts.values()):
            threads.submit(_sweep_node, backend_for(node), node, containers, verdicts, nets)


def verdict(container, replica):
    """What the sweep does with ``container`` of ``replica`` ((state, task deleted), None:
    no such replica): "" (keep it), "stop" or "remove"."""
    if replica is None or replica[1]:
        return "remove"
    if replica[0] in LIVE or container.status == "exited":
        return ""
    return "stop" if container.status in ("running", "stopping", "paused") else "remove"


def _listing(backend, node, instance):
    """([this instance's containers], {network: labels}) on ``node``; empty when it does
    not answer (the next sweep looks again)."""
    try:
        return backend.list_ours(instance), backend.list_networks(instance)
    except Exception as error:
        log.info("sweep: no listing of %s (%s)", node.name, error)
        return [], {}


def _sweep_node(backend, node, containers, verdicts, networks):
    for container in containers:
        action = verdicts[container.handle]
        if action == "stop":
            log.info("sweep: stopping container %s on %s: its replica has ended",
                     container.handle, node.name)
            _quietly(backend.stop, container.handle, 0)
        elif action == "remove":
            log.info("sweep: removing container %s (%s) on %s: no replica claims it",
                     container.handle, container.status, node.name)
            _quietly(backend.remove, container.handle)
    for network in networks:
        log.info("sweep: removing network %s on %s: its task is deleted or unknown",
                 network, node.name)
        _quietly(backend.remove_network, network)


def _remove_all(backend, containers, network):
    for container in containers:
        _quietly(backend.remove, container)
    _quietly(backend.remove_network, network)


def _quietly(call, *args):
    try:
        call(*args)
    except Exception as error:
        log.warning("clean-up %s%s failed: %s", call.__name__, args, error)
