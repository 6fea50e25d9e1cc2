"""Capacity: what each node has and what starting and running replicas hold of it.

A capacity and a spec's needs have one shape, ``{"cpu": millicores, "memory": MiB, kind:
chips}``. The pages read it per node (``node_capacities``) and per pool
(``pool_capacities``); the scheduler's inventory (``scheduler.inventory``) uses the same
rule for a node that takes new replicas (``schedulable``) and the same count of what is
held (``held_by_node``). System resources are what discovery found on the nodes
(``Node.cpu_millis``, ``Node.memory_mib``, ``NodeChip`` rows); nothing here writes them.
"""

from collections import Counter
from dataclasses import dataclass, field

from peewee import JOIN, fn

from portal.db import Prepared
from portal.models import Node, NodeChip, Replica, ReplicaChip, ResourceSpec, Subtask

CPU, MEMORY = "cpu", "memory"
ACTIVE = ("starting", "running")  # the replica states that hold a node's resources


def schedulable(node):
    """Whether new replicas may go to ``node``: enabled, Ready, not cordoned nor draining."""
    return node.enabled and node.ready and not node.cordoned and not node.draining


def needs(cpu_millis, memory_mib, chips):
    """A spec's needs in the capacity shape; ``chips`` is ``[(kind, count)]``, summed per
    kind."""
    total = Counter({CPU: cpu_millis, MEMORY: memory_mib})
    for kind, count in chips:
        total[kind] += count
    return dict(total)


@dataclass
class NodeCapacity:
    """A node, its capacity and what starting and running replicas hold of it
    (``allocated``, same shape); ``schedulable``: new replicas may go there."""

    node: Node
    capacity: dict
    allocated: dict = field(default_factory=dict)

    @property
    def schedulable(self):
        return schedulable(self.node)


def node_capacities():
    """Every node with its capacity and allocation, by name: four queries, whatever the
    number of nodes."""
    chips = {}
    query = (NodeChip.select(NodeChip.node, NodeChip.kind, fn.COUNT(NodeChip.id))
             .where(NodeChip.present).group_by(NodeChip.node, NodeChip.kind).tuples())
    for node_id, kind, count in query:
        chips.setdefault(node_id, {})[kind] = count
    held = held_by_node()
    return [NodeCapacity(node, {CPU: node.cpu_millis, MEMORY: node.memory_mib,
                                **chips.get(node.id, {})}, held.get(node.id, {}))
            for node in Node.select().order_by(Node.name)]


_POOL_NODES = Prepared(lambda pool_id, is_default: (
    Node.select(Node.id, Node.cpu_millis, Node.memory_mib, NodeChip.kind, fn.COUNT(NodeChip.id))
    .join(NodeChip, JOIN.LEFT_OUTER, on=(NodeChip.node == Node.id) & NodeChip.present)
    .where(Node.enabled & ((Node.pool == pool_id) | (Node.pool.is_null() & is_default)))
    .group_by(Node.id, Node.cpu_millis, Node.memory_mib, NodeChip.kind)))


def pool_capacities(pool):
    """The capacities of ``pool``'s enabled nodes (Ready or not; allocations aside), as
    ``node_capacities`` has them: one prepared query. What a submission checks a spec
    against."""
    capacities = {}
    for node_id, cpu, memory, kind, count in _POOL_NODES.rows(pool.id, bool(pool.is_default)):
        capacity = capacities.setdefault(node_id, {CPU: cpu, MEMORY: memory})
        if kind is not None:
            capacity[kind] = count
    return list(capacities.values())


def held_cpu_memory():
    """{node id: {cpu, memory}} that starting and running replicas hold: one query."""
    query = (Replica.select(Replica.node, fn.SUM(ResourceSpec.cpu_millis),
                            fn.SUM(ResourceSpec.memory_mib))
             .join(Subtask).join(ResourceSpec)
             .where(Replica.state.in_(ACTIVE) & Replica.node.is_null(False))
             .group_by(Replica.node).tuples())
    return {node_id: {CPU: cpu, MEMORY: memory} for node_id, cpu, memory in query}


def held_by_node():
    """{node id: {cpu, memory, kind: chips}} that starting and running replicas hold (chips
    until they are released)."""
    held = held_cpu_memory()
    chips = (ReplicaChip.select(NodeChip.node, NodeChip.kind, fn.COUNT(ReplicaChip.id))
             .join(NodeChip).group_by(NodeChip.node, NodeChip.kind).tuples())
    for node_id, kind, count in chips:
        held.setdefault(node_id, {})[kind] = count
    return held


def total_capacity(capacities, part="capacity"):
    """The sum of ``NodeCapacity`` capacities (or ``part="allocated"``), one dict."""
    total = Counter({CPU: 0, MEMORY: 0})
    for item in capacities:
        total.update(getattr(item, part))
    return dict(total)


def chip_kinds(capacities):
    """The chip kinds present in ``capacities`` (dicts), sorted."""
    return sorted({kind for capacity in capacities for kind in capacity} - {CPU, MEMORY})


def fits(needs, capacity):
    """Whether one node with ``capacity`` can hold ``needs`` (both in the shared shape)."""
    return all(capacity.get(kind, 0) >= amount for kind, amount in needs.items())

