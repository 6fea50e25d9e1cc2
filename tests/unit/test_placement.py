"""Placement as pure functions: gang, FIFO with backfill, best fit, limits, reasons."""

import random
from collections import Counter
from datetime import datetime, timedelta

import pytest

from scheduler import placement as pl
from scheduler.placement import Limits, NodeState, ReplicaNeed, TaskRequest, Usage, place

TPU, GPU = "sophgo.com/bm1684x", "nvidia.com/gpu"
T0 = datetime(2025, 1, 1, 12, 0)
NOW = T0 + timedelta(minutes=5)
LAB = {1: "Lab-A", 2: "Lab-B"}


def node(id, free=(), total=6, kind=TPU, pool=1, schedulable=True, cpu=16_000, mem=65_536,
         cpu_total=None, mem_total=None):
    """A node with ``free`` chips of ``kind`` (host indices) of ``total``."""
    return NodeState(id, pool, schedulable, cpu, mem, {kind: tuple(free)} if total else {},
                     cpu_total or cpu, mem_total or mem, {kind: total} if total else {})


def task(id, *chips, user=1, pool=1, at=0, kind=TPU, cpu=1000, mem=1024):
    """A task of one replica per entry of ``chips`` (its chip count), submitted ``at``
    minutes after T0."""
    replicas = tuple(ReplicaNeed(f"{id}.{i}", cpu, mem, {kind: n} if n else {})
                     for i, n in enumerate(chips))
    return TaskRequest(id, user, pool, T0 + timedelta(minutes=at), replicas)


def run(nodes, tasks, **kwargs):
    kwargs.setdefault("now", NOW)
    kwargs.setdefault("pool_names", LAB)
    return place(nodes, tasks, **kwargs)


def chips_of(plan, task_id, kind=TPU):
    return [(a.node_id, a.chips.get(kind, ())) for a in plan.assignments[task_id]]


# Gang


def test_gang_waits_whole_and_holds_nothing():
    plan = run([node(1, [0, 1, 2])], [task(1, 1, 1, 1, 1), task(2, 1, at=1)])
    assert 1 not in plan.assignments
    reason = plan.pending[1]
    assert reason.code == pl.WAITING_FOR_RESOURCE
    # told as the pool stands after the pass: the later task took one of the three
    assert reason.params == {"pool": "Lab-A", "resource": TPU, "needed": 4, "free": 2}
    assert reason.text() == f"waiting for 4 free {TPU} in pool Lab-A (2 free now)"
    assert reason.text({TPU: "TPU 1684X"}) == (
        "waiting for 4 free TPU 1684X in pool Lab-A (2 free now)")
    assert chips_of(plan, 2) == [(1, (0,))]


def test_gang_spreads_over_nodes_when_no_node_holds_it_all():
    plan = run([node(1, [0, 1, 2, 3]), node(2, [4, 5])], [task(1, 2, 2, 2)])
    assert sorted(chips_of(plan, 1)) == [(1, (0, 1)), (1, (2, 3)), (2, (4, 5))]


def test_fragmented_free_chips_wait_for_room_and_stay_free():
    nodes = [node(1, [0, 1, 2]), node(2, [0, 1, 2])]
    alone = run(nodes, [task(1, 2, 2, 2)])
    assert alone.pending[1].code == pl.WAITING_FOR_ROOM
    assert alone.pending[1].text() == ("waiting for room in pool Lab-A: enough is free in all, "
                                       "but not on nodes that can hold these replicas")
    plan = run(nodes, [task(1, 2, 2, 2), task(2, 3, at=1)])
    assert chips_of(plan, 2) == [(1, (0, 1, 2))]
    assert plan.pending[1].params == {"pool": "Lab-A", "resource": TPU, "needed": 6, "free": 3}


def test_a_task_of_several_subtasks_is_placed_whole():
    replicas = (ReplicaNeed("chief", 1000, 1024, {TPU: 1}),
                ReplicaNeed("worker", 1000, 1024, {TPU: 2}),
                ReplicaNeed("logger", 500, 512, {}))
    plan = run([node(1, [0, 1, 2])], [TaskRequest(1, 1, 1, T0, replicas)])
    assert [(a.replica_key, a.node_id, a.chips) for a in plan.assignments[1]] == [
        ("chief", 1, {TPU: (0,)}), ("worker", 1, {TPU: (1, 2)}), ("logger", 1, {})]


# FIFO and backfill


def test_oldest_task_first_whatever_the_input_order():
    plan = run([node(1, [0, 1])], [task(9, 2, at=2), task(5, 2, at=1), task(7, 2, at=3)])
    assert list(plan.assignments) == [5]
    assert set(plan.pending) == {9, 7}


def test_equal_submission_times_go_by_task_id():
    plan = run([node(1, [0])], [task(8, 1), task(3, 1)])
    assert list(plan.assignments) == [3]


def test_a_task_that_cannot_fit_does_not_block_later_ones():
    plan = run([node(1, [0, 1, 2])], [task(1, 4), task(2, 2, at=1), task(3, 1, at=2)])
    assert plan.pending[1].code == pl.WAITING_FOR_RESOURCE
    assert chips_of(plan, 2) == [(1, (0, 1))]
    assert chips_of(plan, 3) == [(1, (2,))]


def test_a_task_waiting_past_reserve_after_holds_back_later_tasks():
    tasks = [task(1, 4), task(2, 1, at=1), task(3, 1, at=2)]
    plan = run([node(1, [0, 1, 2])], tasks, now=T0 + timedelta(minutes=31))
    assert plan.pending[1].code == pl.WAITING_FOR_RESOURCE
    reason = plan.pending[2]
    assert reason.code == pl.BEHIND_OLDER_TASK
    assert reason.params == {"pool": "Lab-A", "task_id": 1, "minutes": 30}
    assert reason.text() == ("waiting behind task 1, which has waited more than 30 minutes "
                             "for room in pool Lab-A")
    assert plan.pending[3].code == pl.BEHIND_OLDER_TASK
    assert plan.assignments == {}


def test_a_reservation_holds_only_its_own_pool():
    nodes = [node(1, [0, 1, 2]), node(2, [0, 1, 2], pool=2)]
    tasks = [task(1, 4), task(2, 1, at=1), task(3, 1, at=1, pool=2)]
    plan = run(nodes, tasks, now=T0 + timedelta(minutes=31))
    assert plan.pending[2].code == pl.BEHIND_OLDER_TASK
    assert chips_of(plan, 3) == [(2, (0,))]


def test_reserve_after_none_always_backfills_and_zero_is_strict_fifo():
    tasks = [task(1, 4), task(2, 1, at=1)]
    nodes = [node(1, [0, 1, 2])]
    assert 2 in run(nodes, tasks, now=T0 + timedelta(days=9), reserve_after=None).assignments
    strict = run(nodes, tasks, reserve_after=timedelta(0))
    assert strict.pending[2].code == pl.BEHIND_OLDER_TASK
    assert strict.pending[2].params["minutes"] == 0


def test_tasks_that_can_never_run_or_are_over_a_limit_reserve_nothing():
    tasks = [task(1, 7), task(2, 2, user=2), task(3, 1, at=1)]
    plan = run([node(1, [0, 1, 2])], tasks, now=T0 + timedelta(hours=2),
               limits={1: Limits(max_chips=1)})
    assert plan.pending[1].code == pl.FITS_NO_NODE
    assert plan.pending[2].code == pl.TASK_ABOVE_CHIP_LIMIT
    assert chips_of(plan, 3) == [(1, (0,))]


# Best fit


def test_one_chip_goes_to_the_node_with_one_free_not_six():
    plan = run([node(1, range(6)), node(2, [3])], [task(1, 1)])
    assert chips_of(plan, 1) == [(2, (3,))]


def test_cpu_only_work_stays_off_chip_nodes():
    plan = run([node(1, range(6)), node(2, total=0, cpu=64_000)], [task(1, 0)])
    assert plan.assignments[1][0].node_id == 2
    assert plan.assignments[1][0].chips == {}


def test_among_equal_chip_fits_the_tightest_cpu_wins_then_the_lowest_id():
    nodes = [node(1, [0], cpu=8000), node(2, [0], cpu=2000), node(3, [0], cpu=2000)]
    assert run(nodes, [task(1, 1)]).assignments[1][0].node_id == 2


def test_a_task_that_fits_one_node_goes_whole_onto_it():
    nodes = [node(1, [0]), node(2, [0]), node(3, [0]), node(4, [0]), node(5, range(6))]
    plan = run(nodes, [task(1, 1, 1, 1, 1)])
    assert chips_of(plan, 1) == [(5, (0,)), (5, (1,)), (5, (2,)), (5, (3,))]


def test_mixed_replicas_go_whole_onto_the_one_node_that_holds_them_all():
    replicas = (ReplicaNeed("train", 1000, 1024, {TPU: 2}), ReplicaNeed("feed", 4000, 1024, {}))
    nodes = [node(1, range(6), cpu=2000), node(2, range(6), cpu=16_000)]
    plan = run(nodes, [TaskRequest(1, 1, 1, T0, replicas)])
    assert [a.node_id for a in plan.assignments[1]] == [2, 2]


def test_a_spread_task_uses_as_few_nodes_as_it_can():
    nodes = [node(1, [0, 1]), node(2, [0, 1, 2]), node(3, range(6)), node(4, range(6))]
    plan = run(nodes, [task(1, *[1] * 8)])
    used = Counter(node_id for node_id, _ in chips_of(plan, 1))
    assert used == {3: 6, 1: 2}


def test_chips_are_the_lowest_free_host_indices():
    plan = run([node(1, [5, 2, 7, 4], total=8)], [task(1, 2)])
    assert chips_of(plan, 1) == [(1, (2, 4))]


def test_later_tasks_in_the_pass_see_chips_taken():
    plan = run([node(1, range(6))], [task(i, 1, at=i) for i in range(8)])
    given = [c for t in plan.assignments for _, c in chips_of(plan, t)]
    assert sorted(given) == [(i,) for i in range(6)]
    assert {plan.pending[6].code, plan.pending[7].code} == {pl.WAITING_FOR_RESOURCE}


# Nodes that get nothing


def test_unschedulable_nodes_get_nothing():
    nodes = [node(1, [0], schedulable=False), node(2, range(6))]
    assert chips_of(run(nodes, [task(1, 1)]), 1) == [(2, (0,))]
    plan = run([node(1, range(6), schedulable=False)], [task(1, 1)])
    assert plan.pending[1].code == pl.NO_READY_NODE
    assert plan.pending[1].text() == "no Ready node in pool Lab-A"


def test_nodes_of_another_pool_get_nothing():
    plan = run([node(1, range(6), pool=2)], [task(1, 1)])
    assert plan.pending[1].code == pl.NO_READY_NODE


# Pending reasons


def test_no_pool():
    plan = run([node(1, range(6))], [task(1, 1, pool=None)])
    assert plan.pending[1] == pl.Reason(pl.NO_POOL, {})
    assert str(plan.pending[1]) == "no pool you may use"


@pytest.mark.parametrize("spec", [
    {"chips": (7,)},                   # more chips than any node has
    {"chips": (1,), "kind": GPU},      # a kind the pool lacks
    {"chips": (0,), "cpu": 32_000},    # more CPU than any node has
    {"chips": (0,), "mem": 100_000},   # more memory than any node has
])
def test_spec_that_fits_no_node_even_empty(spec):
    nodes = [node(1, range(6)), node(2, range(6)), node(3, range(8), total=8, kind=GPU,
                                                        schedulable=False, cpu=64_000)]
    chips = spec.pop("chips")
    plan = run(nodes, [task(1, *chips, **spec)])
    assert plan.pending[1].code == pl.FITS_NO_NODE
    assert plan.pending[1].text() == "spec fits no Ready node in pool Lab-A"


def test_a_busy_node_that_could_hold_the_spec_means_waiting_not_never():
    plan = run([node(1, [], total=6)], [task(1, 6)])
    assert plan.pending[1].params == {"pool": "Lab-A", "resource": TPU, "needed": 6, "free": 0}


def test_larger_than_the_pool_in_all():
    plan = run([node(1, range(6)), node(2, range(6))], [task(1, 6, 6, 1)])
    reason = plan.pending[1]
    assert reason.code == pl.LARGER_THAN_POOL
    assert reason.params == {"pool": "Lab-A", "resource": TPU, "needed": 13, "total": 12}
    assert reason.text({TPU: "TPU"}) == "needs 13 TPU, more than pool Lab-A has in all (12)"


def test_waiting_for_cpu_and_memory_say_so_in_units():
    nodes = [node(1, range(6), cpu=4000, mem=4096, cpu_total=16_000, mem_total=65_536)]
    cpu = run(nodes, [task(1, 1, 1, cpu=2500)]).pending[1]
    assert cpu.params == {"pool": "Lab-A", "resource": pl.CPU, "needed": 5000, "free": 4000}
    assert cpu.text() == "waiting for 5 free CPU in pool Lab-A (4 free now)"
    mem = run(nodes, [task(1, 1, mem=8192)]).pending[1]
    assert mem.text() == "waiting for 8192 free MiB of memory in pool Lab-A (4096 free now)"


def test_pool_named_by_id_when_no_name_given():
    plan = place([], [task(1, 1, pool=7)], now=NOW)
    assert plan.pending[1].text() == "no Ready node in pool 7"


# Per-user limits


def test_chip_limit_counts_usage_and_this_pass():
    tasks = [task(1, 2), task(2, 1, at=1), task(3, 1, at=2), task(4, 1, at=3, user=2)]
    plan = run([node(1, range(6))], tasks, usage={(1, 1): Usage(chips=1, replicas=1)},
               limits={1: Limits(max_chips=4)})
    assert set(plan.assignments) == {1, 2, 4}
    reason = plan.pending[3]
    assert reason.code == pl.OVER_CHIP_LIMIT
    assert reason.params == {"pool": "Lab-A", "limit": 4, "in_use": 4, "needed": 1}
    assert reason.text() == "over your chip limit in pool Lab-A (4 of 4 in use, this task needs 1)"


def test_chip_limit_never_holds_back_a_task_without_chips():
    plan = run([node(1, range(6))], [task(1, 0)], usage={(1, 1): Usage(chips=9)},
               limits={1: Limits(max_chips=4)})
    assert 1 in plan.assignments


def test_replica_limit():
    plan = run([node(1, range(6))], [task(1, 0, 0), task(2, 0, at=1)],
               usage={(1, 1): Usage(replicas=2)}, limits={1: Limits(max_replicas=4)})
    assert 1 in plan.assignments
    reason = plan.pending[2]
    assert reason.code == pl.OVER_REPLICA_LIMIT
    assert reason.text() == ("over your running-replica limit in pool Lab-A (4 of 4 running, "
                             "this task needs 1)")


def test_a_task_larger_than_the_limit_is_told_so():
    plan = run([node(1, range(6))], [task(1, 3), task(2, 0, 0, 0)],
               limits={1: Limits(max_chips=2, max_replicas=2)})
    assert plan.pending[1].text() == "needs 3 chips, more than your limit of 2 in pool Lab-A"
    assert plan.pending[2].text() == ("needs 3 replicas, more than your limit of 2 running "
                                      "in pool Lab-A")


def test_limits_and_usage_are_per_pool():
    nodes = [node(1, range(6)), node(2, range(6), pool=2)]
    plan = run(nodes, [task(1, 2), task(2, 2, pool=2)],
               usage={(1, 2): Usage(chips=2)}, limits={1: Limits(max_chips=2), 2: Limits()})
    assert set(plan.assignments) == {1, 2}


# Determinism and input checks


def test_same_input_same_plan_whatever_the_order():
    placed = 0
    for seed in range(20):
        rng = random.Random(seed)
        nodes, tasks, usage, limits = random_snapshot(rng)
        first = place(nodes, tasks, now=NOW, usage=usage, limits=limits)
        rng.shuffle(nodes)
        rng.shuffle(tasks)
        assert place(nodes, tasks, now=NOW, usage=usage, limits=limits) == first
        placed += len(first.assignments)
    assert placed > 20  # the snapshots are not trivially empty


@pytest.mark.parametrize("nodes, tasks", [
    ([node(1, [0]), node(1, [1])], [task(1, 1)]),
    ([node(1, [0])], [task(1, 1), task(1, 1)]),
    ([node(1, [0, 0])], [task(1, 1)]),
    ([node(1, [0])], [task(1, -1)]),
    ([node(1, [0])], [task(1)]),
])
def test_bad_input_is_refused(nodes, tasks):
    with pytest.raises(ValueError):
        place(nodes, tasks, now=NOW)


# Invariants over many random snapshots


def random_snapshot(rng):
    """Two pools of TPU, GPU and CPU-only nodes (some unschedulable, some busy) and
    tasks of 1-6 replicas from a few users, with usage within the limits."""
    nodes = []
    for i in range(0 if rng.random() < 0.1 else rng.randint(1, 16)):
        pool = rng.randint(1, 2)  # pool 1: TPU and CPU nodes, pool 2: GPU and CPU nodes
        kind, total = rng.choice([(TPU, 6) if pool == 1 else (GPU, 8), (None, 0)])
        free = tuple(rng.sample(range(total), rng.randint(0, total)))
        cpu_total, mem_total = rng.choice([(8000, 16_384), (32_000, 131_072)])
        nodes.append(NodeState(
            i + 1, pool, rng.random() > 0.15,
            rng.randint(cpu_total // 2, cpu_total), rng.randint(mem_total // 2, mem_total),
            {kind: free} if kind else {}, cpu_total, mem_total, {kind: total} if kind else {}))
    tasks = []
    for t in range(rng.randint(1, 25)):
        pool = rng.choice([1, 1, 1, 2, 2, 2, 3, None])  # pool 3 has no nodes
        kind = rng.choice([TPU] * 9 + [GPU] if pool == 1 else [GPU] * 9 + [TPU])
        replicas = tuple(
            ReplicaNeed((t, r), rng.choice([0, 500, 2000, 6000]), rng.choice([0, 1024, 8192]),
                        {kind: rng.choice([0, 1, 1, 2, 4])})
            for r in range(rng.randint(1, 6)))
        tasks.append(TaskRequest(t, rng.randint(1, 4), pool,
                                 T0 + timedelta(minutes=rng.randint(0, 60)), replicas))
    limits = {p: Limits(rng.choice([None, None, 6, 20]), rng.choice([None, 4, 20])) for p in (1, 2)}
    usage = {}
    for user in range(1, 5):
        for pool, limit in limits.items():
            usage[(user, pool)] = Usage(rng.randint(0, (limit.max_chips or 10) // 2),
                                        rng.randint(0, (limit.max_replicas or 10) // 2))
    return nodes, tasks, usage, limits


@pytest.mark.parametrize("seed", range(300))
def test_invariants_hold_on_random_snapshots(seed):
    rng = random.Random(seed)
    nodes, tasks, usage, limits = random_snapshot(rng)
    plan = place(nodes, tasks, now=T0 + timedelta(minutes=rng.choice([10, 45])),
                 usage=usage, limits=limits)
    by_id = {n.id: n for n in nodes}
    assert set(plan.assignments) | set(plan.pending) == {t.task_id for t in tasks}
    assert not set(plan.assignments) & set(plan.pending)

    given, cpu, mem, held = set(), Counter(), Counter(), Counter()
    for t in tasks:
        if t.task_id not in plan.assignments:
            continue
        placed = plan.assignments[t.task_id]
        assert [a.replica_key for a in placed] == [r.key for r in t.replicas]  # gang: all
        for replica, a in zip(t.replicas, placed, strict=True):
            host = by_id[a.node_id]
            assert host.schedulable and host.pool_id == t.pool_id
            assert {k: len(v) for k, v in a.chips.items()} == {
                k: n for k, n in replica.chips.items() if n}
            for kind, indices in a.chips.items():
                for index in indices:
                    assert index in host.chips_free[kind]
                    assert (a.node_id, kind, index) not in given  # never twice
                    given.add((a.node_id, kind, index))
            cpu[a.node_id] += replica.cpu_millis
            mem[a.node_id] += replica.memory_mib
            held[(t.user_id, t.pool_id, "chips")] += sum(replica.chips.values())
            held[(t.user_id, t.pool_id, "replicas")] += 1
    for node_id in cpu:
        assert cpu[node_id] <= by_id[node_id].cpu_millis_free
        assert mem[node_id] <= by_id[node_id].memory_mib_free
    for (user, pool), used in usage.items():
        limit = limits[pool]
        if limit.max_chips is not None:
            assert used.chips + held[(user, pool, "chips")] <= limit.max_chips
        if limit.max_replicas is not None:
            assert used.replicas + held[(user, pool, "replicas")] <= limit.max_replicas

    free_after = Counter()
    for n in nodes:
        if n.schedulable:
            for kind, indices in n.chips_free.items():
                free_after[(n.pool_id, kind)] += len(indices)
    for node_id, kind, _ in given:
        free_after[(by_id[node_id].pool_id, kind)] -= 1
    for t in tasks:
        reason = plan.pending.get(t.task_id)
        reason and reason.text({TPU: "TPU"})  # every reason renders
        if reason and reason.code == pl.WAITING_FOR_RESOURCE and "/" in reason.params["resource"]:
            assert reason.params["free"] == free_after[(t.pool_id, reason.params["resource"])]
            assert reason.params["free"] < reason.params["needed"]
        if reason and reason.code == pl.FITS_NO_NODE:
            ready = [n for n in nodes if n.schedulable and n.pool_id == t.pool_id]
            assert any(all(n.chips_total.get(k, 0) < c for n in ready)
                       or all(n.cpu_millis_total < r.cpu_millis for n in ready)
                       or all(n.memory_mib_total < r.memory_mib for n in ready)
                       for r in t.replicas for k, c in r.chips.items())
