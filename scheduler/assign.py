"""Placing waiting tasks: plan over a fresh snapshot, then store each task's assignment.

``plan`` only reads (``scheduler.inventory``) and asks ``scheduler.placement``; ``apply``
stores what it decided: each placed replica moves to ``starting`` on its node with its
chips and, where it needs one, a peer port, and each task that still waits says why
(``Task.reason``).
"""

import logging

from peewee import IntegrityError, chunked

from portal import ledger, settings
from portal.db import Prepared, database
from portal.models import Node, NodeChip, Replica, ReplicaChip, ResourceSpec, Subtask, Task, utcnow
from portal.money import format_amount
from portal.reasons import stored
from portal.tasks import refresh_state
from scheduler import inventory, placement
from scheduler.transitions import transition

log = logging.getLogger(__name__)

# Why each task with a pending replica waits, as stored: read on every pass (prepared).
_WAITING_REASONS = Prepared(lambda: Task.select(Task.id, Task.reason).where(
    Task.id.in_(Replica.select(Replica.task).where(Replica.state == "pending"))))


class StalePlan(Exception):
    """A task's placement no longer matches the database; nothing of it is stored."""


class NoPeerPort(StalePlan):
    """Every port of ``peer_ports`` is held at a node address: the task waits, saying so."""

    def __init__(self, address):
        super().__init__(f"no peer port free at {address}")
        self.address = address


def plan():
    """The placement of every waiting task over a fresh snapshot; None when nothing
    waits. It only reads: ``apply`` stores it."""
    needs = inventory.spec_needs()
    tasks = inventory.pending_tasks(needs)
    if not tasks:
        return None
    short = unaffordable()
    usage, limits = inventory.usage_and_limits(needs)
    chosen = placement.place(inventory.node_states(),
                             [t for t in tasks if t.task_id not in short], now=utcnow(),
                             usage=usage, limits=limits, pool_names=inventory.pool_names())
    # Only the tasks Hourglass places: a Slurm pool's say why they wait themselves.
    chosen.pending.update({t.task_id: short[t.task_id] for t in tasks if t.task_id in short})
    return chosen


def unaffordable():
    """{task id: Reason} for waiting tasks whose renter's balance does not cover the
    miner's minimum period of them: they wait, holding nothing."""
    costs = inventory.start_costs()
    balances = inventory.balances({user for user, _ in costs.values()})
    minutes = int(settings.get("min_start_minutes"))
    currency = settings.get("currency")
    short = {}
    for task_id, (user, per_hour) in costs.items():
        needed = ledger.minimum_for(per_hour, minutes)
        if balances.get(user, 0) < needed:
            short[task_id] = placement.Reason("balance_low", {
                "balance": format_amount(balances.get(user, 0)), "minutes": minutes,
                "needed": format_amount(needed), "currency": currency})
    return short


def apply(chosen, local_url, peer_ports):
    """Store the ``Plan`` ``chosen``: each task in one transaction, all of its replicas or none.
    ``local_url`` says which node is local; ``peer_ports`` are the node ports a replica
    may be given.

    The snapshot may be stale by now. A chip taken meanwhile (the unique
    ``ReplicaChip.chip``), a chip or node gone, or a replica that left ``pending``
    (its renter stopped the task, which the portal does at once) undoes that task's
    placement; the next pass plans again. So a chip is never held by a replica that
    will not start.
    """
    if chosen.assignments:
        store_assignments(chosen.assignments, local_url, peer_ports)
    if chosen.pending:
        store_reasons(chosen.pending)


def store_assignments(by_task, local_url, peer_ports):
    """Store the placements ``{task id: [Assignment]}`` (see ``apply``); {task id: why} of
    those not stored."""
    chip_ids = {(n, k, i): cid for cid, n, k, i in NodeChip.select(
        NodeChip.id, NodeChip.node, NodeChip.kind, NodeChip.index).where(
        NodeChip.present).tuples()}
    names, addresses, local = {}, {}, set()
    for node_id, name, address, url in Node.select(Node.id, Node.name, Node.address,
                                                   Node.url).tuples():
        names[node_id], addresses[node_id] = name, address
        if url == local_url:
            local.add(node_id)
    placed = [a.replica_key for assignments in by_task.values() for a in assignments]
    prices = dict(Replica.select(Replica.id, ResourceSpec.price_per_hour).join(Subtask)
                  .join(ResourceSpec).where(Replica.id.in_(placed)).tuples())
    ports = _ports_in_use()
    notebooks = {task_id for (task_id,) in Task.select(Task.id).where(
        Task.id.in_(list(by_task)) & (Task.kind == "notebook")).tuples()}
    not_stored = {}
    for task_id, assignments in by_task.items():
        spans_nodes = len({a.node_id for a in assignments}) > 1
        try:
            with database.atomic():
                for a in assignments:
                    # A port for peers on other nodes, or for the notebook proxy to
                    # reach JupyterLab on a node that is not this host's own.
                    published = spans_nodes or (task_id in notebooks
                                                and a.node_id not in local)
                    port = (_free_port(ports, addresses.get(a.node_id, ""), peer_ports)
                            if published else None)
                    if not transition(Replica(id=a.replica_key), "starting",
                                      stored("placed_on",
                                             {"node": names.get(a.node_id, a.node_id)}),
                                      from_state="pending", node=a.node_id,
                                      price_per_hour=prices[a.replica_key],
                                      peer_port=port):
                        raise StalePlan(f"replica {a.replica_key} is no longer pending")
                    for kind, indices in a.chips.items():
                        for slot, index in enumerate(indices):
                            chip = chip_ids.get((a.node_id, kind, index))
                            if chip is None:
                                raise StalePlan(f"chip {kind} {index} is gone")
                            ReplicaChip.create(replica=a.replica_key, slot=slot, chip=chip)
                Task.update(reason="").where(Task.id == task_id).execute()
        except IntegrityError:  # a chip was taken meanwhile: the next pass places again
            log.warning("placement of task %s lost a race; retrying next pass", task_id)
            not_stored[task_id] = "a chip it was given is held by another replica"
            continue
        except StalePlan as why:
            log.info("placement of task %s not stored (%s)", task_id, why)
            not_stored[task_id] = str(why)
            if isinstance(why, NoPeerPort):
                Task.update(reason=stored("no_peer_port", {"address": why.address})).where(
                    Task.id == task_id).execute()
            continue
        refresh_state(Task(id=task_id))
    return not_stored


def store_reasons(pending):
    """Why each task waits (``{task id: Reason}``), as ``Task.reason``: one statement
    per reason (most waiting tasks share one), and only for the rows whose reason
    changed, so a pass over many waiting tasks takes the write lock, which submissions
    need too, only when there is something to write."""
    current = dict(_WAITING_REASONS.rows())
    changed = {}
    for task_id, reason in pending.items():
        text = stored(reason.code, reason.params)[:512]
        if task_id in current and current[task_id] != text:  # only tasks that still wait
            changed.setdefault(text, []).append(task_id)
    for text, task_ids in changed.items():
        for ids in chunked(task_ids, 500):  # under any database's limit on parameters
            Task.update(reason=text).where(Task.id.in_(ids)).execute()


def _ports_in_use():
    """{node address: the peer ports held there by starting and running replicas}. By
    address, not node: two Podman services on one host share its ports."""
    used = {}
    for address, port in (Replica.select(Node.address, Replica.peer_port).join(Node)
                          .where(Replica.peer_port.is_null(False)
                                 & Replica.state.in_(("starting", "running"))).tuples()):
        used.setdefault(address, set()).add(port)
    return used


def _free_port(used, address, peer_ports):
    """The lowest port of ``peer_ports`` free at ``address``, now taken in ``used``;
    NoPeerPort when none is left (the task waits for the next pass)."""
    taken = used.setdefault(address, set())
    port = next((p for p in peer_ports if p not in taken), None)
    if port is None:
        raise NoPeerPort(address)
    taken.add(port)
    return port
