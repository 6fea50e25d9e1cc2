"""Following replicas' containers: the database learns what the engine says of each.

Start and end times are the container's own StartedAt / FinishedAt (integer
nanoseconds). "Last seen running" is the moment *before* the engine was asked and said
``running``: the container was alive then, so a replica is never billed past its
container's real end (a ``stopping`` container proves nothing).
"""

import logging

from peewee import JOIN

from portal.models import Node, Replica, Task, utcnow
from portal.reasons import STOPPED_BY_YOU, stored
from portal.tasks import refresh_state
from scheduler.backend import BackendError, NodeUnreachable
from scheduler.container_specs import jupyter_address
from scheduler.transitions import last_seen, transition

log = logging.getLogger(__name__)


def refresh(backend_for, threads, instance, lost_after):
    """Follow every replica believed starting or running (this is also adoption after
    a restart); returns the ids of the nodes that did not answer.

    ``backend_for(node)`` is the node's backend, ``threads`` the executor its calls run
    in, ``instance`` the database's instance id. One list of each node's running
    containers tells which running replicas are still alive; only the others (starting,
    ended, or missing from the list) are inspected one by one, for their exact StartedAt
    and FinishedAt. A node that does not answer, or a container whose inspect fails,
    leaves those replicas as they were this pass; past ``lost_after`` (a timedelta)
    without being seen they are lost, billed to when they were last seen alive, and
    keep their chips until their containers are confirmed gone.
    """
    replicas = list(Replica.select(Replica, Task, Node).join(Task).switch(Replica)
                    .join(Node, JOIN.LEFT_OUTER)
                    .where(Replica.state.in_(("starting", "running"))
                           & (Replica.container != "")))
    moved = []  # replicas that changed state: their tasks' states are derived again
    by_node = {}
    for replica in replicas:
        if replica.node_id is None:  # the miner removed its node: nothing to ask
            if transition(replica, "lost",
                          stored("node_removed", {"seen": last_seen(replica)})):
                moved.append(replica)
        else:
            by_node.setdefault(replica.node_id, []).append(replica)
    listed = {node_id: threads.submit(_running_on, backend_for(group[0].node), group[0].node,
                                      instance)
              for node_id, group in by_node.items()}
    alive, ask, silent, silent_nodes = {}, [], {}, set()
    for node_id, group in by_node.items():
        running, seen, error = listed[node_id].result()
        if running is None:
            silent_nodes.add(node_id)
        for replica in group:
            if running is None:
                silent[replica.id] = error
            elif (replica.container in running and replica.state == "running"
                  and replica.started_ns is not None):
                alive.setdefault(seen, []).append(replica.id)
            else:
                ask.append(replica)
    for seen, ids in alive.items():  # one UPDATE per node
        Replica.update(last_seen_at=seen).where(Replica.id.in_(ids)).execute()
    inspected = {r.id: threads.submit(_inspect, backend_for(r.node), r) for r in ask}
    for replica in ask:
        state, seen, error = inspected[replica.id].result()
        if error is None:
            if follow(replica, state, seen, instance):
                moved.append(replica)
        else:
            silent[replica.id] = error
    now = utcnow()
    for replica in replicas:
        if replica.id in silent and replica.last_seen_at \
                and now - replica.last_seen_at > lost_after \
                and transition(replica, "lost", stored("node_silent", {
                    "node": replica.node.name,
                    "since": f"{replica.last_seen_at:%Y-%m-%d %H:%M:%S} UTC",
                    "detail": str(silent[replica.id])}), keep_chips=True):
            moved.append(replica)
    for task in {r.task_id: r.task for r in moved}.values():
        refresh_state(task)
    return silent_nodes


def follow(replica, state, seen, instance):
    """Apply what one inspect said about ``replica``'s container; ``seen`` is when the
    engine was asked (a ``running`` answer proves the container was alive then).
    Returns whether the replica changed state."""
    if state is None:  # confirmed gone: its chips are free
        return transition(replica, "lost",
                          stored("container_vanished", {"seen": last_seen(replica)}))
    started = state.started.ns if state.started else None
    address = jupyter_address(replica, state, instance)
    if state.status == "running" and replica.state == "starting":
        return transition(replica, "running", stored("container_started", {}),
                          started_ns=started, last_seen_at=seen, **address)
    if state.status == "exited":
        # JupyterLab ends a stop by exiting 0: a notebook asked to stop is stopped.
        if state.exit_code == 0 and not (replica.task.kind == "notebook"
                                         and replica.task.stop_requested):
            end = "succeeded"
        else:
            end = "stopped" if replica.task.stop_requested else "failed"
        why = (replica.task.stop_reason or STOPPED_BY_YOU if end == "stopped" else
               stored("exited_oom" if state.oom_killed else "exited", {"code": state.exit_code}))
        finished = state.finished.ns if state.finished else None
        if started is not None and finished is not None:
            # Podman 4.3 can stamp a container that exits at once as finished a few
            # microseconds before it started: such a run lasted no time at all.
            finished = max(finished, started)
        return transition(replica, end, why, started_ns=started,
                          exit_code=state.exit_code, finished_ns=finished)
    if state.status == "running":
        if address.get("address") == replica.address:
            address = {}
        Replica.update(last_seen_at=seen, **address).where(Replica.id == replica.id
                                                           ).execute()
    # stopping, paused, created: alive or not, nothing proves it; the next pass looks
    return False


def _running_on(backend, node, instance):
    """(the handles of this instance's running containers on ``node``, when the engine was
    asked, None) or (None, None, why) when it did not answer. When the list fails but
    the node answers, an empty set: each replica is then inspected."""
    seen = utcnow()
    try:
        states = backend.list_ours(instance, running_only=True)
    except NodeUnreachable as error:
        return None, None, str(error)[:200]
    except BackendError as error:
        log.warning("listing the containers on %s failed: %s", node.name, error)
        return set(), seen, None
    return {s.handle for s in states if s.status == "running"}, seen, None


def _inspect(backend, replica):
    """(state, when the engine was asked, None) or (None, None, why) on any failure."""
    seen = utcnow()
    try:
        return backend.inspect(replica.container), seen, None
    except Exception as error:  # a 500, a timeout, a refusal: this replica's alone
        log.warning("inspecting %s on %s failed: %s", replica.container,
                    replica.node.name, error)
        return None, None, str(error)[:200]
