"""Placement: which node, and which host chips, each pending replica gets in one pass.

Pure functions over an inventory snapshot: no I/O, no database, no Podman. The
scheduler's leader builds the snapshot (``NodeState`` per node, ``TaskRequest``
per pending task, usage and limits), calls ``place`` and stores the ``Plan``;
tests and ``bench/placement.py`` call it directly. Inputs are never changed:
``place`` works on its own copy, so a chip it hands out in a pass is seen as
taken by every later task of the same pass.

The rules, applied per pool to its tasks oldest first (``submitted_at``, then
``task_id``):

1. Gang: all of a task's replicas are placed, or none; a task that does not
   fit holds nothing.
2. A task that cannot start never blocks the others: a task that does not fit
   (or is over its user's limit) is skipped and later tasks that fit go first
   (backfill) -- until a waiting task has waited ``reserve_after`` (30 minutes
   by default). From then on it reserves its pool: later tasks of that pool
   wait behind it, so the pool drains until it fits. ``reserve_after=None``
   never reserves; ``timedelta(0)`` is strict first-in-first-out.
3. Per-user limits per pool (``Limits``: chips in use, running replicas; None
   is unlimited) count what the user already holds plus what this pass gave.
4. Best fit: a task goes whole onto one node when one can hold it, else its
   replicas (largest first) fill the nodes it already uses before a new node
   is opened, and a new node is the one that takes the most of the remaining
   replicas. Among equals: fewest free chips of the needed kinds left, then
   fewest free chips of other kinds (CPU work stays off chip nodes), then
   least CPU, then least memory left, then the lowest node id.
5. Chips are the lowest free host indices of the kind on the node.
6. Nodes with ``schedulable`` False (cordoned, NotReady, disabled, draining:
   the caller decides) get nothing and count for nothing.

A task left pending gets a ``Reason``: a code and parameters (for translated
text) plus ``text()``, the English default. The first that applies wins: no
pool; no Ready node, fits no node, larger than the pool (waiting cannot help);
the user's limits; a reservation; what is short, told as the pool stands at
the end of the pass. Chip kinds stay system kinds: pass ``kind_names`` to
``text`` to show custom resource names.
"""

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from portal.reasons import render

DEFAULT_RESERVE_AFTER = timedelta(minutes=30)

NO_POOL = "no_pool"
NO_READY_NODE = "no_ready_node"
FITS_NO_NODE = "fits_no_node"
LARGER_THAN_POOL = "larger_than_pool"
TASK_ABOVE_CHIP_LIMIT = "task_above_chip_limit"
TASK_ABOVE_REPLICA_LIMIT = "task_above_replica_limit"
OVER_CHIP_LIMIT = "over_chip_limit"
OVER_REPLICA_LIMIT = "over_replica_limit"
BEHIND_OLDER_TASK = "behind_older_task"
WAITING_FOR_RESOURCE = "waiting_for_resource"
WAITING_FOR_ROOM = "waiting_for_room"

_NOTHING = (0, 0, {})  # no tentative share: (cpu_millis, memory_mib, {kind: count})
CPU = "cpu"  # a ``resource`` parameter: millicores; chip kinds contain a "/"
MEMORY = "memory"  # MiB


@dataclass(frozen=True)
class NodeState:
    """One node now. Free = total minus what replicas hold; chip lists are host indices."""

    id: int
    pool_id: int
    schedulable: bool
    cpu_millis_free: int
    memory_mib_free: int
    chips_free: Mapping[str, tuple[int, ...]]
    cpu_millis_total: int
    memory_mib_total: int
    chips_total: Mapping[str, int]


@dataclass(frozen=True)
class ReplicaNeed:
    """What one replica asks for; ``key`` is the caller's (a replica id, say)."""

    key: Hashable
    cpu_millis: int
    memory_mib: int
    chips: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskRequest:
    """A pending task: its replicas still to place, all in one pool (None: no pool allowed)."""

    task_id: int
    user_id: int
    pool_id: int | None
    submitted_at: datetime
    replicas: tuple[ReplicaNeed, ...]


@dataclass(frozen=True)
class Limits:
    """The miner's per-user limit in one pool; None is unlimited."""

    max_chips: int | None = None
    max_replicas: int | None = None


@dataclass(frozen=True)
class Usage:
    """What one user already holds in one pool: chips (all kinds) and running replicas."""

    chips: int = 0
    replicas: int = 0


@dataclass(frozen=True)
class Assignment:
    """One replica placed: its node and, per kind, the host chip indices it gets."""

    replica_key: Hashable
    node_id: int
    chips: Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class Reason:
    """Why a task is still pending: a code from this module and its parameters."""

    code: str
    params: Mapping[str, object]

    def text(self, kind_names=None):
        """The English sentence (``portal.reasons``); ``kind_names`` maps a chip kind to its
        display name."""
        return render(self.code, self.params, kind_names)

    def __str__(self):
        return self.text()


@dataclass(frozen=True)
class Plan:
    """The outcome of a pass: placed tasks (replicas in the request's order) and the rest."""

    assignments: dict[int, tuple[Assignment, ...]]
    pending: dict[int, Reason]


def place(nodes, tasks, *, now, usage=None, limits=None, pool_names=None,
          reserve_after=DEFAULT_RESERVE_AFTER):
    """Place what fits of ``tasks`` on ``nodes``; called by the leader on every pass.

    ``usage`` maps (user_id, pool_id) to ``Usage``, ``limits`` maps pool_id to the
    ``Limits`` every user of that pool gets, ``pool_names`` maps pool_id to the
    name used in reasons. ``now`` and the tasks' ``submitted_at`` must be
    comparable datetimes. The same input always gives the same plan.
    """
    usage, limits, pool_names = usage or {}, limits or {}, pool_names or {}
    _check_unique("node", [n.id for n in nodes])
    _check_unique("task", [t.task_id for t in tasks])
    states = {}
    for node in nodes:
        states.setdefault(node.pool_id, []).append(node)
    pools = {}
    held = {key: (u.chips, u.replicas) for key, u in usage.items()}
    plan = Plan({}, {})
    for task in sorted(tasks, key=lambda t: (t.submitted_at, t.task_id)):
        if task.pool_id is None:
            plan.pending[task.task_id] = Reason(NO_POOL, {})
            continue
        if task.pool_id not in pools:
            name = pool_names.get(task.pool_id, str(task.pool_id))
            pools[task.pool_id] = _Pool(name, states.get(task.pool_id, ()))
        outcome = _decide(pools[task.pool_id], task, limits.get(task.pool_id), held,
                          now, reserve_after)
        if isinstance(outcome, tuple):
            plan.assignments[task.task_id] = outcome
        else:
            plan.pending[task.task_id] = outcome
    for task_id, reason in plan.pending.items():
        if callable(reason):  # a wait is told as the pool stands at the end of the pass
            plan.pending[task_id] = reason()
    return plan


def _check_unique(what, ids):
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate {what} ids")


def _need(replica):
    """A replica's need as (cpu, memory, ((kind, count), ...)): hashable and sortable."""
    chips = tuple(sorted((k, n) for k, n in replica.chips.items() if n))
    if replica.cpu_millis < 0 or replica.memory_mib < 0 or any(n < 0 for _, n in chips):
        raise ValueError(f"negative need for replica {replica.key!r}")
    return replica.cpu_millis, replica.memory_mib, chips


def _total(needs):
    chips = {}
    for _, _, kinds in needs:
        for kind, n in kinds:
            chips[kind] = chips.get(kind, 0) + n
    return (sum(n[0] for n in needs), sum(n[1] for n in needs), tuple(sorted(chips.items())))


def _by_resource(need):
    """(resource, amount) pairs of a need, chip kinds first: the order reasons are told in."""
    cpu, mem, chips = need
    return [*chips, (CPU, cpu), (MEMORY, mem)]


def _decide(pool, task, limit, held, now, reserve_after):
    """Place one task (a tuple of ``Assignment``) or say why it waits: a ``Reason``, or
    for a task that could run but does not fit now, a function that tells it later."""
    if not task.replicas:
        raise ValueError(f"task {task.task_id!r} has no replicas to place")
    needs = [_need(r) for r in task.replicas]
    total = _total(needs)
    reason = pool.never_fits(needs, total)
    if reason:
        return reason
    key = (task.user_id, task.pool_id)
    chips_in_use, replicas_in_use = held.get(key, (0, 0))
    chips = sum(n for _, n in total[2])
    reason = limit_reason(limit, Usage(chips_in_use, replicas_in_use), chips, len(needs),
                          pool.name)
    if reason:
        return reason
    if pool.reserved_by is not None:
        return Reason(BEHIND_OLDER_TASK, {"pool": pool.name, "task_id": pool.reserved_by,
                                          "minutes": reserve_after.total_seconds() / 60})
    spots = pool.fit(needs, total)
    if spots is None:
        if reserve_after is not None and now - task.submitted_at >= reserve_after:
            pool.reserved_by = task.task_id
        return lambda: pool.wait_reason(total)
    held[key] = (chips_in_use + chips, replicas_in_use + len(needs))
    return pool.commit(task.replicas, needs, spots)


def limit_reason(limit, usage, chips, replicas, pool_name):
    """Why a task of ``chips`` chips and ``replicas`` replicas waits for its renter's
    ``Limits`` in pool ``pool_name``, where they hold ``usage`` already: a ``Reason``, or None
    when it is within them (``limit`` None: no limits)."""
    return (_limit_reason(OVER_CHIP_LIMIT, TASK_ABOVE_CHIP_LIMIT, limit and limit.max_chips,
                          usage.chips, chips, pool_name)
            or _limit_reason(OVER_REPLICA_LIMIT, TASK_ABOVE_REPLICA_LIMIT,
                             limit and limit.max_replicas, usage.replicas, replicas, pool_name))


def _limit_reason(over, above, limit, in_use, needed, pool_name):
    if limit is None or needed == 0 or in_use + needed <= limit:
        return None  # a task that needs no chips is never held back by the chip limit
    params = {"pool": pool_name, "limit": limit, "in_use": in_use, "needed": needed}
    return Reason(above if needed > limit else over, params)


class _Node:
    """A schedulable node's working copy: what is still free during this pass."""

    __slots__ = ("id", "cpu", "mem", "chips", "free_chips")

    def __init__(self, state):
        self.id = state.id
        self.cpu = state.cpu_millis_free
        self.mem = state.memory_mib_free
        self.chips = {}
        for kind, indices in state.chips_free.items():
            if len(set(indices)) != len(indices):
                raise ValueError(f"node {state.id!r} lists a free {kind} chip twice")
            if indices:
                self.chips[kind] = sorted(indices)
        self.free_chips = sum(len(v) for v in self.chips.values())

    def fit_key(self, need, used=_NOTHING):
        """None when ``need`` does not fit here on top of ``used`` (this task's tentative
        share), else the best-fit key, lowest wins: what placing it would leave free."""
        cpu_left = self.cpu - used[0] - need[0]
        mem_left = self.mem - used[1] - need[1]
        if cpu_left < 0 or mem_left < 0:
            return None
        left = needed_free = 0
        for kind, n in need[2]:
            free = len(self.chips.get(kind, ())) - used[2].get(kind, 0)
            if free < n:
                return None
            needed_free += free
            left += free - n
        other = self.free_chips - sum(used[2].values()) - needed_free
        return left, other, cpu_left, mem_left, self.id

    def copies(self, need, most):
        """How many replicas of ``need`` fit here, up to ``most``."""
        cpu, mem, chips = need
        if cpu:
            most = min(most, self.cpu // cpu)
        if mem:
            most = min(most, self.mem // mem)
        for kind, n in chips:
            most = min(most, len(self.chips.get(kind, ())) // n)
        return most


class _Pool:
    """One pool's schedulable nodes during a pass, with totals and what is free in all."""

    def __init__(self, name, states):
        self.name = name
        ready = sorted((s for s in states if s.schedulable), key=lambda s: s.id)
        self.states = ready
        self.nodes = [_Node(s) for s in ready]
        self.total = {CPU: 0, MEMORY: 0}
        self.free = {CPU: 0, MEMORY: 0}
        self.by_kind = {}
        for state, node in zip(ready, self.nodes, strict=True):
            self.total[CPU] += state.cpu_millis_total
            self.total[MEMORY] += state.memory_mib_total
            self.free[CPU] += node.cpu
            self.free[MEMORY] += node.mem
            for kind, count in state.chips_total.items():
                self.total[kind] = self.total.get(kind, 0) + count
            for kind, indices in node.chips.items():
                self.free[kind] = self.free.get(kind, 0) + len(indices)
                self.by_kind.setdefault(kind, []).append(node)
        self.reserved_by = None
        self._fits_some_node = {}
        self._failed = set()  # task shapes that did not fit: free space only shrinks

    def never_fits(self, needs, total):
        """A reason when this task cannot run here even on an empty pool."""
        if not self.nodes:
            return Reason(NO_READY_NODE, {"pool": self.name})
        for need in needs:
            if need not in self._fits_some_node:
                self._fits_some_node[need] = any(
                    s.cpu_millis_total >= need[0] and s.memory_mib_total >= need[1]
                    and all(s.chips_total.get(k, 0) >= n for k, n in need[2])
                    for s in self.states)
            if not self._fits_some_node[need]:
                return Reason(FITS_NO_NODE, {"pool": self.name})
        for resource, needed in _by_resource(total):
            if needed > self.total.get(resource, 0):
                return Reason(LARGER_THAN_POOL, {"pool": self.name, "resource": resource,
                                                 "needed": needed,
                                                 "total": self.total.get(resource, 0)})
        return None

    def wait_reason(self, total):
        """Why a task that could run here does not fit now."""
        for resource, needed in _by_resource(total):
            if needed > self.free.get(resource, 0):
                return Reason(WAITING_FOR_RESOURCE, {"pool": self.name, "resource": resource,
                                                     "needed": needed,
                                                     "free": self.free.get(resource, 0)})
        return Reason(WAITING_FOR_ROOM, {"pool": self.name})

    def fit(self, needs, total):
        """The node for each replica (all of them), or None: nothing is taken yet."""
        shape = tuple(sorted(needs))
        if shape in self._failed:
            return None
        if all(n <= self.free.get(r, 0) for r, n in _by_resource(total)):
            one = self._best(self._candidates(total[2]), total)
            spots = [one] * len(needs) if one else self._spread(needs)
            if spots:
                return spots
        self._failed.add(shape)
        return None

    def _candidates(self, chips):
        """Nodes that may hold ``chips``: those with the rarest needed kind, else all."""
        if not chips:
            return self.nodes
        return min((self.by_kind.get(k, ()) for k, _ in chips), key=len)

    @staticmethod
    def _best(nodes, need, used=None):
        best, best_key = None, None
        for node in nodes:
            key = node.fit_key(need, used[node] if used is not None else _NOTHING)
            if key is not None and (best_key is None or key < best_key):
                best, best_key = node, key
        return best

    def _spread(self, needs):
        """Replicas largest first: nodes already used first, else open the roomiest."""
        order = sorted(range(len(needs)),
                       key=lambda i: (-sum(n for _, n in needs[i][2]), -needs[i][0],
                                      -needs[i][1], i))
        used, spots = {}, [None] * len(needs)
        for position, i in enumerate(order):
            need = needs[i]
            node = self._best(used, need, used)
            if node is None:
                node = self._open(need, len(order) - position, used)
                if node is None:
                    return None
                used[node] = (0, 0, {})
            cpu, mem, chips = used[node]
            kinds = dict(chips)
            for kind, n in need[2]:
                kinds[kind] = kinds.get(kind, 0) + n
            used[node] = (cpu + need[0], mem + need[1], kinds)
            spots[i] = node
        return spots

    def _open(self, need, rest, used):
        best, best_key = None, None
        for node in self._candidates(need[2]):
            key = None if node in used else node.fit_key(need)
            if key is not None:
                key = (-node.copies(need, rest), *key)
                if best_key is None or key < best_key:
                    best, best_key = node, key
        return best

    def commit(self, replicas, needs, spots):
        """Take the chosen nodes' CPU, memory and lowest free chips; return the assignments."""
        out = []
        for replica, (cpu, mem, chips), node in zip(replicas, needs, spots, strict=True):
            node.cpu -= cpu
            node.mem -= mem
            self.free[CPU] -= cpu
            self.free[MEMORY] -= mem
            got = {}
            for kind, n in chips:
                free = node.chips[kind]
                got[kind] = tuple(free[:n])
                del free[:n]
                node.free_chips -= n
                self.free[kind] -= n
            out.append(Assignment(replica.key, node.id, got))
        return tuple(out)
