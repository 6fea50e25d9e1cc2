"""peewee models. Times are naive UTC datetimes; use ``utcnow()``.

Units: CPU in millicores (``cpu_millis``), memory in MiB (``memory_mib``),
money in integer micro-units (1 UNC = 1,000,000). Names follow DESIGN.md.
"""

import re
import secrets
from datetime import UTC, datetime

from flask_login import UserMixin
from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    CompositeKey,
    DateField,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from portal.db import database

ROLES = ("miner", "renter")


def utcnow():
    """Now, as a naive UTC datetime (what every DateTimeField here stores)."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_session_nonce():
    return secrets.token_urlsafe(16)


def table_name(model):
    """A model's table: its name in snake case, plural (``PoolGroup`` -> ``pool_groups``);
    a model whose table is named otherwise says so in its Meta."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", model.__name__).lower() + "s"


class BaseModel(Model):
    class Meta:
        database = database
        table_function = table_name


class User(UserMixin, BaseModel):
    """A miner or a renter. ``session_nonce`` is part of the login cookie:
    changing it (password reset, disable) ends every session of the user."""

    name = CharField(max_length=64, unique=True)
    display_name = CharField(max_length=128, default="")
    role = CharField(max_length=16, choices=[(r, r) for r in ROLES])
    password_hash = CharField(max_length=256)
    active = BooleanField(default=True)
    locale = CharField(max_length=16, null=True)
    session_nonce = CharField(max_length=64, default=new_session_nonce)
    created_at = DateTimeField(default=utcnow)
    # micro-units; changed only by ``portal.ledger``, in the transaction of its ledger row
    balance = BigIntegerField(default=0)

    def get_id(self):
        return f"{self.id}:{self.session_nonce}"

    @property
    def is_active(self):
        return self.active

    @property
    def label(self):
        return self.display_name or self.name


class Group(BaseModel):
    """A user group; resource pools are bound to groups."""

    name = CharField(max_length=64, unique=True)
    description = CharField(max_length=256, default="")
    created_at = DateTimeField(default=utcnow)


class Membership(BaseModel):
    """A user in a group (a renter's groups decide which pools they may use)."""

    user = ForeignKeyField(User, backref="memberships", on_delete="CASCADE")
    group = ForeignKeyField(Group, backref="memberships", on_delete="CASCADE")

    class Meta:
        primary_key = CompositeKey("user", "group")


class LeaderLease(BaseModel):
    """Who runs the scheduler for this database, until when, and its last tick."""

    name = CharField(max_length=32, primary_key=True)
    holder = CharField(max_length=128)
    expires_at = DateTimeField()
    last_tick_at = DateTimeField(null=True)

    class Meta:
        table_name = "leader_lease"


class Setting(BaseModel):
    """A miner setting, e.g. ``currency`` ("UNC"). Read through ``portal.settings``."""

    key = CharField(max_length=64, primary_key=True)
    value = TextField()


class SlurmCluster(BaseModel):
    """A lab's Slurm cluster, reached through its slurmrestd (docs/slurm.md): ``rest_url`` is
    ``unix:///path`` (local auth, no token) or ``http(s)://host:port`` with ``user`` and a
    JWT ``token`` (never shown back). ``podman_url`` is how Hourglass reaches Podman on a
    compute node (``{node}`` and ``{address}`` filled in per node) and ``host_root`` where
    that node's devices are (``{node}`` filled in)."""

    name = CharField(max_length=64, unique=True)
    rest_url = CharField(max_length=512)
    user = CharField(max_length=64, default="")
    token = TextField(default="")
    podman_url = CharField(max_length=512, default="ssh://root@{address}/run/podman/podman.sock")
    host_root = CharField(max_length=512, default="/")
    created_at = DateTimeField(default=utcnow)


class Pool(BaseModel):
    """A resource pool: a set of whole nodes, bound to user groups.

    The default pool (``is_default``) holds every node in no other pool; with
    no bound groups it serves every renter. A pool with ``slurm_cluster`` is a Slurm pool:
    its nodes are that cluster's ``partition``, and Slurm places its replicas.
    """

    name = CharField(max_length=64, unique=True)
    description = CharField(max_length=256, default="")
    is_default = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)
    slurm_cluster = ForeignKeyField(SlurmCluster, backref="pools", null=True,
                                    on_delete="RESTRICT")
    partition = CharField(max_length=128, default="")


class PoolGroup(BaseModel):
    """A pool bound to a group: the group's renters may use the pool. The default pool
    bound to no group serves every renter."""

    pool = ForeignKeyField(Pool, backref="bindings", on_delete="CASCADE")
    group = ForeignKeyField(Group, backref="pool_bindings", on_delete="CASCADE")

    class Meta:
        primary_key = CompositeKey("pool", "group")


class Node(BaseModel):
    """One Podman endpoint and what discovery last found on it.

    ``source``: ``local`` (the portal's own service), ``connection`` (from
    ``podman system connection list``) or ``manual`` (added on the Nodes page).
    ``pool`` is None for a node in the default pool.
    """

    name = CharField(max_length=64, unique=True)
    # not unique: a Slurm cluster's compute nodes may share one Podman service
    url = CharField(max_length=512, index=True)
    source = CharField(max_length=16, default="manual")
    enabled = BooleanField(default=True)
    hostname = CharField(max_length=255, default="")
    address = CharField(max_length=255, default="")
    os_name = CharField(max_length=255, default="")
    kernel = CharField(max_length=255, default="")
    podman_version = CharField(max_length=64, default="")
    cpu_millis = IntegerField(default=0)
    memory_mib = IntegerField(default=0)
    labels = TextField(default="{}")
    images = TextField(default="[]")  # JSON list of image names discovery found on the node
    ready = BooleanField(default=False)
    reason = CharField(max_length=512, default="not discovered yet")
    ready_changed_at = DateTimeField(default=utcnow)
    last_seen_at = DateTimeField(null=True)
    cordoned = BooleanField(default=False)
    draining = BooleanField(default=False)
    pool = ForeignKeyField(Pool, backref="nodes", null=True, on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)
    # a compute node of this Slurm cluster (``source`` "slurm"), found by its discovery
    slurm_cluster = ForeignKeyField(SlurmCluster, backref="nodes", null=True,
                                    on_delete="CASCADE")
    # where a Slurm node's devices and runtime are, from its cluster's host root ("": the
    # host's own, or HOURGLASS_HOST_ROOT on the local Podman)
    host_root = CharField(max_length=512, default="")


class NodeChip(BaseModel):
    """One accelerator chip of a node, as discovery found it (index = host chip number).

    A chip missing from a discovery is marked absent (``present`` False), never deleted:
    a replica may still hold it, and only its holder ending or the miner removing the
    node releases it. An absent chip is not placed."""

    node = ForeignKeyField(Node, backref="chips", on_delete="CASCADE")
    kind = CharField(max_length=64)
    index = IntegerField()
    device = CharField(max_length=255)
    card = IntegerField(null=True)
    driver = CharField(max_length=64, default="")
    present = BooleanField(default=True)

    class Meta:
        indexes = ((("node", "kind", "index"), True),)


class CustomResource(BaseModel):
    """A miner's display name over a system resource kind ("TPU 1684X" over
    ``sophgo.com/bm1684x``)."""

    name = CharField(max_length=64, unique=True)
    kind = CharField(max_length=64)
    description = CharField(max_length=256, default="")
    created_at = DateTimeField(default=utcnow)


class ResourceSpec(BaseModel):
    """A bundle a renter picks: CPU, memory, chips, and a price per machine-hour."""

    name = CharField(max_length=96, unique=True)
    cpu_millis = IntegerField()
    memory_mib = IntegerField()
    price_per_hour = BigIntegerField()  # micro-units
    enabled = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)


class SpecResource(BaseModel):
    """How many of one custom resource a spec asks for."""

    spec = ForeignKeyField(ResourceSpec, backref="resources", on_delete="CASCADE")
    resource = ForeignKeyField(CustomResource, backref="spec_uses", on_delete="RESTRICT")
    count = IntegerField()

    class Meta:
        primary_key = CompositeKey("spec", "resource")


class ApiToken(BaseModel):
    """A personal API token. Only its SHA-256 is stored; ``prefix`` identifies it on pages."""

    user = ForeignKeyField(User, backref="tokens", on_delete="CASCADE")
    name = CharField(max_length=64)
    prefix = CharField(max_length=16)
    token_hash = CharField(max_length=64, unique=True)
    created_at = DateTimeField(default=utcnow)
    last_used_at = DateTimeField(null=True)


class PoolLimit(BaseModel):
    """The miner's per-user limits in a pool (None: no limit), and its notebooks' idle
    culling: a notebook idle for ``cull_idle_minutes`` is stopped (None: never)."""

    pool = ForeignKeyField(Pool, backref="limit", unique=True, on_delete="CASCADE")
    max_chips_per_user = IntegerField(null=True)
    max_replicas_per_user = IntegerField(null=True)
    cull_idle_minutes = IntegerField(null=True)
    max_run_minutes = IntegerField(null=True)  # the most a task or notebook may run here


# --- the renter's workspace: code, data, images and templates ------------------------------


class SavedVersion(BaseModel):
    """What every saved state of a folder of files has (``AlgorithmVersion``,
    ``DatasetVersion``; no table of its own): ``number`` counts from 1; ``size_bytes`` and
    ``file_count`` are what was saved."""

    number = IntegerField()
    note = CharField(max_length=256, default="")
    size_bytes = BigIntegerField(default=0)
    file_count = IntegerField(default=0)
    created_at = DateTimeField(default=utcnow)


class VersionedFolder(BaseModel):
    """What an algorithm and a dataset have (no table of its own): a name unique among the
    owner's, a description; their files are in numbered versions."""

    name = CharField(max_length=64)
    description = CharField(max_length=256, default="")
    created_at = DateTimeField(default=utcnow)


class Algorithm(VersionedFolder):
    """A renter's code, in numbered versions (``AlgorithmVersion``). A version's files live
    under the data folder (``portal.storage``) and never change once saved; a task gets one
    at /code, a notebook a working copy of one."""

    user = ForeignKeyField(User, backref="algorithms", on_delete="RESTRICT")

    class Meta:
        indexes = ((("user", "name"), True),)


class AlgorithmVersion(SavedVersion):
    """One saved state of an algorithm's files."""

    algorithm = ForeignKeyField(Algorithm, backref="versions", on_delete="CASCADE")

    class Meta:
        indexes = ((("algorithm", "number"), True),)


class Dataset(VersionedFolder):
    """A renter's data, in numbered versions (``DatasetVersion``), mounted read-only at
    /dataset; shared read-only with groups through ``DatasetShare``."""

    user = ForeignKeyField(User, backref="datasets", on_delete="RESTRICT")

    class Meta:
        indexes = ((("user", "name"), True),)


class DatasetVersion(SavedVersion):
    """One saved state of a dataset's files."""

    dataset = ForeignKeyField(Dataset, backref="versions", on_delete="CASCADE")

    class Meta:
        indexes = ((("dataset", "number"), True),)


class DatasetShare(BaseModel):
    """A dataset the members of ``group`` may read (mount, browse, download)."""

    dataset = ForeignKeyField(Dataset, backref="shares", on_delete="CASCADE")
    group = ForeignKeyField(Group, backref="dataset_shares", on_delete="CASCADE")

    class Meta:
        indexes = ((("dataset", "group"), True),)


class Upload(BaseModel):
    """A file a renter is sending in pieces (restartable after a dropped connection):
    ``received`` bytes of ``size`` are on disk under the data folder; ``key`` names it
    (random, not a secret: every request checks ``user``)."""

    key = CharField(max_length=64, unique=True)
    user = ForeignKeyField(User, backref="uploads", on_delete="CASCADE")
    filename = CharField(max_length=255)
    size = BigIntegerField()
    received = BigIntegerField(default=0)
    created_at = DateTimeField(default=utcnow)


IMAGE_SOURCES = ("preset", "upload", "build", "commit")
IMAGE_STATES = ("pending", "building", "ready", "failed")


class Image(BaseModel):
    """A container image a renter may run. ``user`` None: a preset the miner offers to
    everyone; else the renter's own (an uploaded ``podman save`` archive, a build from a
    Containerfile, or a saved notebook). ``reference`` is the engine's name for it;
    ``jupyter`` says whether it contains JupyterLab (checked when it is added); ``log``
    keeps the end of a build's output."""

    user = ForeignKeyField(User, backref="images", null=True, on_delete="RESTRICT")
    name = CharField(max_length=96)
    reference = CharField(max_length=255, unique=True)
    source = CharField(max_length=16, choices=[(s, s) for s in IMAGE_SOURCES])
    state = CharField(max_length=16, default="ready", choices=[(s, s) for s in IMAGE_STATES])
    reason = CharField(max_length=512, default="")
    jupyter = BooleanField(default=False)
    size_bytes = BigIntegerField(default=0)
    containerfile = TextField(default="")
    log = TextField(default="")
    created_at = DateTimeField(default=utcnow)


class TaskTemplate(BaseModel):
    """A training task's whole definition saved to start again in one click: ``definition``
    is JSON (image, argv, env, pool, subtasks with their specs, algorithm and dataset
    versions, maximum run time), checked again like any submission when used."""

    user = ForeignKeyField(User, backref="task_templates", on_delete="CASCADE")
    name = CharField(max_length=96)
    description = CharField(max_length=256, default="")
    definition = TextField(default="{}")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("user", "name"), True),)


class TemplateShare(BaseModel):
    """A template the members of ``group`` may start tasks from (a copy runs as theirs)."""

    template = ForeignKeyField(TaskTemplate, backref="shares", on_delete="CASCADE")
    group = ForeignKeyField(Group, backref="template_shares", on_delete="CASCADE")

    class Meta:
        indexes = ((("template", "group"), True),)


class Notebook(BaseModel):
    """A renter's JupyterLab notebook: what each of its runs (a ``Task`` of kind "notebook",
    ``runs``) starts with. ``count`` subtasks (``lab-0``...) of one replica each with
    ``spec``; /code is the notebook's own folder (its working copy, first filled from
    ``algorithm_version`` when it has one); ``dataset_version`` is read-only at /dataset.
    ``max_run_minutes``: each run stops after that long (None: no limit but the pool's).
    ``spec`` and ``pool`` are None once the miner deleted them (a start is then refused,
    or the default pool used). A deleted notebook keeps its row (its runs are billed)."""

    user = ForeignKeyField(User, backref="notebooks", on_delete="RESTRICT")
    name = CharField(max_length=96)
    image = CharField(max_length=255)
    spec = ForeignKeyField(ResourceSpec, backref="notebooks", null=True, on_delete="SET NULL")
    pool = ForeignKeyField(Pool, backref="notebooks", null=True, on_delete="SET NULL")
    count = IntegerField(default=1)
    algorithm_version = ForeignKeyField(AlgorithmVersion, backref="notebooks", null=True,
                                        on_delete="SET NULL")
    dataset_version = ForeignKeyField(DatasetVersion, backref="notebooks", null=True,
                                      on_delete="SET NULL")
    max_run_minutes = IntegerField(null=True)
    created_at = DateTimeField(default=utcnow)
    deleted = BooleanField(default=False)


TASK_KINDS = ("training", "notebook")
REPLICA_STATES = ("pending", "starting", "running", "succeeded", "failed", "stopped", "lost")
REPLICA_ENDED = ("succeeded", "failed", "stopped", "lost")


class Task(BaseModel):
    """What a renter runs: a training task or a notebook. ``argv`` and ``env`` are JSON
    (a list of strings, never run through a shell; a dict of strings). ``state`` is
    derived from the replicas and cached here for lists. A training task gets
    ``algorithm_version`` at /code and ``dataset_version`` read-only at /dataset; it stops
    after ``max_run_minutes`` of running (None: no limit but its pool's)."""

    user = ForeignKeyField(User, backref="tasks", on_delete="RESTRICT")
    kind = CharField(max_length=16, default="training")
    name = CharField(max_length=96)
    image = CharField(max_length=255)
    argv = TextField(default="[]")
    env = TextField(default="{}")
    pool = ForeignKeyField(Pool, backref="tasks", on_delete="RESTRICT")
    state = CharField(max_length=16, default="pending")
    reason = CharField(max_length=512, default="")
    submitted_at = DateTimeField(default=utcnow)
    stop_requested = BooleanField(default=False)
    # why, when Hourglass (not the renter) asked it to stop, e.g. "balance exhausted"
    stop_reason = CharField(max_length=128, default="")
    deleted = BooleanField(default=False)
    rerun_of = ForeignKeyField("self", null=True, backref="reruns", on_delete="SET NULL")
    # a notebook's run: its notebook, and the Jupyter token of this run (never shown, put
    # in a URL or logged; not in ``env``)
    notebook = ForeignKeyField(Notebook, null=True, backref="runs", on_delete="SET NULL")
    secret = CharField(max_length=64, default="")
    algorithm_version = ForeignKeyField(AlgorithmVersion, backref="tasks", null=True,
                                        on_delete="SET NULL")
    dataset_version = ForeignKeyField(DatasetVersion, backref="tasks", null=True,
                                      on_delete="SET NULL")
    max_run_minutes = IntegerField(null=True)
    template = ForeignKeyField(TaskTemplate, backref="tasks", null=True, on_delete="SET NULL")
    # on a Slurm pool: the id of its heterogeneous job (the leader's), stored before anything
    # else so a restart adopts it
    slurm_job = BigIntegerField(null=True)
    # its Slurm job is over: cancelled once its replicas ended, or ended by Slurm
    slurm_job_done = BooleanField(default=False)


class Subtask(BaseModel):
    """One role of a task: a spec and how many replicas it runs (``count``; the column is
    still called ``replicas``)."""

    task = ForeignKeyField(Task, backref="subtasks", on_delete="CASCADE")
    role = CharField(max_length=32)
    spec = ForeignKeyField(ResourceSpec, backref="subtasks", on_delete="RESTRICT")
    count = IntegerField(column_name="replicas")

    class Meta:
        indexes = ((("task", "role"), True),)


class Replica(BaseModel):
    """One container of a subtask: the unit placed, started, stopped and billed.

    ``started_ns`` / ``finished_ns`` are Podman's own StartedAt / FinishedAt in
    integer nanoseconds since the epoch (UTC), exact for billing.
    ``price_per_hour`` is its spec's price when it was placed (a later price
    change does not touch it); ``billed_seconds`` and ``charged`` are what its
    charges in the ledger cover and add up to so far, ``settled`` that its last
    charge is made. Only ``portal.ledger`` writes those three.
    """

    task = ForeignKeyField(Task, backref="replicas", on_delete="CASCADE")
    subtask = ForeignKeyField(Subtask, backref="replica_rows", on_delete="CASCADE")
    index = IntegerField()
    state = CharField(max_length=16, default="pending")
    reason = CharField(max_length=512, default="")
    node = ForeignKeyField(Node, backref="replicas", null=True, on_delete="SET NULL")
    container = CharField(max_length=128, default="")
    started_ns = BigIntegerField(null=True)
    finished_ns = BigIntegerField(null=True)
    exit_code = IntegerField(null=True)
    last_seen_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)
    price_per_hour = BigIntegerField(null=True)
    billed_seconds = BigIntegerField(default=0)
    charged = BigIntegerField(default=0)
    settled = BooleanField(default=False)
    # where a notebook replica's JupyterLab answers ("IP:port" on its task's network), set
    # when it runs; the notebook proxy reaches it there
    address = CharField(max_length=64, default="")
    # a notebook replica's JupyterLab's last activity, as the idle culling last saw it
    last_activity_at = DateTimeField(null=True)
    # the node port published for this replica when its task spans nodes (the same number
    # inside, HOURGLASS_PORT); peers on other nodes reach it at its node's address and this
    peer_port = IntegerField(null=True)
    # passes whose start of this replica found its node not answering (it fails at a limit)
    start_attempts = IntegerField(default=0)

    class Meta:
        indexes = ((("subtask", "index"), True), (("state", "settled"), False))


class ReplicaEvent(BaseModel):
    """A state transition of a replica, with its time and reason."""

    replica = ForeignKeyField(Replica, backref="events", on_delete="CASCADE")
    at = DateTimeField(default=utcnow)
    state = CharField(max_length=16)
    reason = CharField(max_length=512, default="")

    class Meta:
        indexes = ((("state", "at"), False),)  # the miner's alerts: the latest lost, failed


class ReplicaChip(BaseModel):
    """A chip held by a replica while it is placed or running. The unique chip
    column is what makes double allocation impossible, even across processes."""

    replica = ForeignKeyField(Replica, backref="chips", on_delete="CASCADE")
    chip = ForeignKeyField(NodeChip, backref="holder", unique=True, on_delete="CASCADE")
    slot = IntegerField()  # the number inside the container: /dev/bm-sophon<slot>


LEDGER_KINDS = ("recharge", "charge", "adjust", "refund")


class LedgerEntry(BaseModel):
    """One movement of a renter's money; append-only, written only by ``portal.ledger``.

    ``amount`` is signed micro-units (+ credits the renter, - debits) and
    ``balance_after`` the user's balance once it applied. ``actor`` did it (None:
    the scheduler's metering, or the ``billing`` command). A charge names its
    replica, task, spec, node, the price snapshot and the seconds of the
    replica's run it covers
    (``seconds_from`` exclusive to ``seconds_to`` inclusive); one replica never
    has two charges ending at the same second, so a charge is never made twice.
    """

    user = ForeignKeyField(User, backref="ledger", on_delete="RESTRICT")
    kind = CharField(max_length=16, choices=[(k, k) for k in LEDGER_KINDS])
    amount = BigIntegerField()
    balance_after = BigIntegerField()
    at = DateTimeField(default=utcnow)
    actor = ForeignKeyField(User, null=True, backref="ledger_actions", on_delete="RESTRICT")
    note = CharField(max_length=512, default="")
    replica = ForeignKeyField(Replica, null=True, backref="charges", on_delete="RESTRICT")
    task = ForeignKeyField(Task, null=True, backref="charges", on_delete="RESTRICT")
    spec = ForeignKeyField(ResourceSpec, null=True, backref="charges", on_delete="RESTRICT")
    node = ForeignKeyField(Node, null=True, backref="charges", on_delete="SET NULL")
    price_per_hour = BigIntegerField(null=True)
    seconds_from = BigIntegerField(null=True)
    seconds_to = BigIntegerField(null=True)

    class Meta:
        table_name = "ledger"
        indexes = (
            (("replica", "seconds_to"), True),
            (("user", "at"), False),
            (("kind", "at"), False),
            (("user", "kind", "id"), False),
            (("kind", "amount"), False),  # sums of one kind (recharges) from the index alone
        )


class UsageMonth(BaseModel):
    """What a renter was charged in one month (``month``: its first day, UTC), kept by
    ``portal.ledger`` in the transaction of the charges, so pages show "used this month" and
    "charged in all" without summing the ledger."""

    user = ForeignKeyField(User, backref="usage_months", on_delete="RESTRICT")
    month = DateField()
    charged = BigIntegerField(default=0)

    class Meta:
        indexes = ((("user", "month"), True),)


class NodeEvent(BaseModel):
    """A node becoming Ready or NotReady, written by discovery when it changes: the miner's
    overview lists the latest as alerts."""

    node = ForeignKeyField(Node, backref="events", on_delete="CASCADE")
    at = DateTimeField(default=utcnow)
    ready = BooleanField()
    reason = CharField(max_length=512, default="")

    class Meta:
        indexes = ((("at",), False),)


class NodeSample(BaseModel):
    """A node's readings at one moment, taken by the leader's sampling job: the share of its
    CPU in use (0 to 1), memory used and in all, and how many of its chips replicas held.
    A reading the node could not give is None."""

    node = ForeignKeyField(Node, backref="samples", on_delete="CASCADE")
    at = DateTimeField(default=utcnow)
    cpu_ratio = FloatField(null=True)
    memory_used_bytes = BigIntegerField(null=True)
    memory_total_bytes = BigIntegerField(null=True)
    chips_held = IntegerField(default=0)

    class Meta:
        indexes = ((("node", "at"), False), (("at",), False))


class ReplicaSample(BaseModel):
    """A running replica's readings at one moment: CPU in cores (1.5 = one and a half cores
    busy) and memory in use."""

    replica = ForeignKeyField(Replica, backref="samples", on_delete="CASCADE")
    at = DateTimeField(default=utcnow)
    cpu_cores = FloatField(null=True)
    memory_bytes = BigIntegerField(null=True)

    class Meta:
        indexes = ((("replica", "at"), False), (("at",), False))


class ChipSample(BaseModel):
    """A chip's readings at one moment, where its accelerator plugin can read them, and the
    replica that held it then (None: free)."""

    chip = ForeignKeyField(NodeChip, backref="samples", on_delete="CASCADE")
    replica = ForeignKeyField(Replica, backref="chip_samples", null=True, on_delete="SET NULL")
    at = DateTimeField(default=utcnow)
    util_ratio = FloatField(null=True)
    memory_used_bytes = BigIntegerField(null=True)
    memory_total_bytes = BigIntegerField(null=True)
    temp_c = FloatField(null=True)
    power_w = FloatField(null=True)

    class Meta:
        indexes = ((("chip", "at"), False), (("replica", "at"), False), (("at",), False))


class EarningDay(BaseModel):
    """What charges earned on one UTC day per node and spec, kept by ``portal.ledger`` in the
    transaction of the charges, so the Earnings page and the overview never sum the ledger.
    ``node`` and ``spec`` are the ledger row's ids (0: none), not foreign keys: a removed
    node's earnings stay."""

    day = DateField()
    node = IntegerField(default=0)
    spec = IntegerField(default=0)
    charged = BigIntegerField(default=0)

    class Meta:
        indexes = ((("day", "node", "spec"), True),)


class EarningMonth(BaseModel):
    """``EarningDay`` summed per month (``month``: its first day), kept beside it: the
    Earnings page's all-time figures read a row per month, node and spec, however long the
    ledger grows."""

    month = DateField()
    node = IntegerField(default=0)
    spec = IntegerField(default=0)
    charged = BigIntegerField(default=0)

    class Meta:
        indexes = ((("month", "node", "spec"), True),)


class NotebookGrant(BaseModel):
    """A one-time ticket from the portal's Open to the notebook origin: ``user`` may enter
    ``replica``'s JupyterLab once, within a minute, from the portal sign-in ``login_id``
    that made it (``origin``: the portal origin the Open came from). Only the SHA-256 of its
    token is stored."""

    token_hash = CharField(max_length=64, unique=True)
    user = ForeignKeyField(User, backref="notebook_grants", on_delete="CASCADE")
    replica = ForeignKeyField(Replica, backref="notebook_grants", on_delete="CASCADE")
    login_id = CharField(max_length=64, index=True)
    origin = CharField(max_length=255)
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()
    used = BooleanField(default=False)


class NotebookAccess(BaseModel):
    """A browser's session on the notebook origin (its cookie holds the token; only the
    SHA-256 is stored): ``user``'s notebooks until ``expires_at``, while the portal sign-in
    ``login_id`` lasts (signing out deletes the row) and the user's ``session_nonce`` is
    still ``nonce``."""

    token_hash = CharField(max_length=64, unique=True)
    user = ForeignKeyField(User, backref="notebook_access", on_delete="CASCADE")
    login_id = CharField(max_length=64, index=True)
    nonce = CharField(max_length=64)
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField()

    class Meta:
        table_name = "notebook_access"


MODELS = [User, Group, Membership, LeaderLease, Setting, SlurmCluster, Pool, PoolGroup, Node,
          NodeChip, CustomResource, ResourceSpec, SpecResource, ApiToken, PoolLimit, Task, Subtask,
          Replica, ReplicaEvent, ReplicaChip, LedgerEntry, Notebook, UsageMonth,
          NotebookGrant, NotebookAccess, Algorithm, AlgorithmVersion, Dataset, DatasetVersion,
          DatasetShare, Upload, Image, TaskTemplate, TemplateShare, NodeEvent, NodeSample,
          ReplicaSample, ChipSample, EarningDay, EarningMonth]
