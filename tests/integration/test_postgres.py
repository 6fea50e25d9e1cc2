"""Hourglass on a real PostgreSQL server: migrations, users, the leader lease, logging in.

Each test gets a fresh database on the cluster that ``postgres_server`` starts
(see ``tests/integration/conftest.py``). What the tests check about the schema
they read back from PostgreSQL itself (``information_schema``), not from peewee.
"""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg2
import pytest
from peewee import PostgresqlDatabase

from portal.db import MIGRATIONS_DIR
from portal.models import MODELS
from tests.conftest import PASSWORD, create_accounts
from tests.support import csrf_token, login

pytestmark = pytest.mark.postgres

TABLES = {model._meta.table_name for model in MODELS} | {"migratehistory"}
MIGRATIONS = sorted(path.stem for path in MIGRATIONS_DIR.glob("[0-9]*.py"))


def query(url, sql, *params):
    """Rows of ``sql`` on the database at ``url``, over a connection of its own."""
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def public_tables(url):
    rows = query(url, "SELECT table_name FROM information_schema.tables "
                      "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")
    return {name for (name,) in rows}


@pytest.fixture
def bare_app(instance, postgres_url):
    """The app bound to an empty PostgreSQL database (no migration applied)."""
    from app import create_app
    from portal import db

    app = create_app({"TESTING": True, "DATABASE_URL": postgres_url})
    yield app
    db.database.close()


@pytest.fixture
def pg_app(bare_app):
    """The app on PostgreSQL with every migration applied."""
    from portal import db

    with bare_app.app_context():
        db.upgrade()
    return bare_app


@pytest.fixture
def pg_accounts(pg_app):
    """``mina`` (miner) and ``rene`` (renter) on PostgreSQL, password ``PASSWORD``."""
    return create_accounts(pg_app)


# --- migrations --------------------------------------------------------------------------


def test_upgrade_creates_the_schema_in_postgres(bare_app, postgres_url):
    from portal import db

    assert bare_app.config["DATABASE_URL"] == postgres_url
    assert public_tables(postgres_url) == set()
    with bare_app.app_context():
        assert isinstance(db.database.obj, PostgresqlDatabase)
        assert db.upgrade() == MIGRATIONS
    assert public_tables(postgres_url) == TABLES
    assert query(postgres_url, "SELECT name FROM migratehistory ORDER BY id") == [
        (name,) for name in MIGRATIONS]

    with bare_app.app_context():
        assert db.upgrade() == []  # nothing left to apply
    assert query(postgres_url, "SELECT count(*) FROM migratehistory") == [(len(MIGRATIONS),)]


def test_migrated_schema_has_the_constraints_the_app_relies_on(pg_app, postgres_url):
    columns = dict(query(postgres_url,
                         "SELECT table_name || '.' || column_name, data_type "
                         "FROM information_schema.columns WHERE table_schema = 'public'"))
    assert columns["users.created_at"] == "timestamp without time zone"  # naive UTC
    assert columns["leader_lease.expires_at"] == "timestamp without time zone"
    assert columns["users.active"] == "boolean"
    assert columns["users.id"] == "integer"

    unique = query(postgres_url,
                   "SELECT tc.table_name, kcu.column_name "
                   "FROM information_schema.table_constraints tc "
                   "JOIN information_schema.key_column_usage kcu "
                   "  ON kcu.constraint_name = tc.constraint_name "
                   "WHERE tc.table_schema = 'public' AND tc.constraint_type = 'PRIMARY KEY'")
    assert ("leader_lease", "name") in unique
    assert {("memberships", "user_id"), ("memberships", "group_id")} <= set(unique)

    rules = dict(query(postgres_url,
                       "SELECT tc.table_name || '.' || kcu.column_name, rc.delete_rule "
                       "FROM information_schema.referential_constraints rc "
                       "JOIN information_schema.table_constraints tc "
                       "  ON tc.constraint_name = rc.constraint_name "
                       "JOIN information_schema.key_column_usage kcu "
                       "  ON kcu.constraint_name = rc.constraint_name "
                       "WHERE rc.constraint_schema = 'public'"))
    assert rules["memberships.user_id"] == rules["memberships.group_id"] == "CASCADE"
    assert rules["spec_resources.resource_id"] == "RESTRICT"  # a used resource stays
    assert rules["nodes.pool_id"] == "SET NULL"  # back to the default pool


def test_db_upgrade_cli_on_postgres(bare_app, postgres_url):
    runner = bare_app.test_cli_runner()
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"Applied {len(MIGRATIONS)} migration(s)." in result.output
    assert public_tables(postgres_url) == TABLES

    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "Database is up to date." in result.output


# --- users and groups --------------------------------------------------------------------


def test_users_round_trip_on_postgres(pg_app, postgres_url):
    from portal.models import Membership, User
    from portal.users import (
        UserError,
        authenticate,
        create_group,
        create_user,
        group_names_by_user,
        set_groups,
    )

    with pg_app.app_context():
        gpu, cpu = create_group("gpu", "GPU pool"), create_group("cpu")
        user = create_user("rene", "renter", PASSWORD, "Rene Renter", groups=["gpu"])

        found = authenticate("rene", PASSWORD)
        assert found is not None and found.id == user.id and found.role == "renter"
        assert authenticate("rene", "not-the-password") is None
        assert authenticate("nobody", PASSWORD) is None
        assert group_names_by_user() == {user.id: ["gpu"]}

        set_groups(user, [cpu.id, gpu.id])
        assert group_names_by_user() == {user.id: ["cpu", "gpu"]}
        set_groups(user, [cpu.id])
        assert group_names_by_user() == {user.id: ["cpu"]}

        with pytest.raises(UserError, match="already exists"):
            create_user("rene", "miner", PASSWORD)
        with pytest.raises(UserError, match="already exists"):
            create_group("gpu")
        # The failed INSERTs must not leave the connection in an aborted transaction.
        assert User.select().count() == 1
        assert authenticate("rene", PASSWORD).id == user.id

        User.delete().where(User.id == user.id).execute()
        assert Membership.select().count() == 0  # ON DELETE CASCADE, done by PostgreSQL

    assert query(postgres_url, "SELECT name FROM groups ORDER BY name") == [("cpu",), ("gpu",)]


def test_user_cli_on_postgres(pg_app, postgres_url):
    runner = pg_app.test_cli_runner()
    result = runner.invoke(args=["user", "add", "mina", "--role", "miner", "--group", "gpu",
                                 "--password-stdin"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["user", "add", "mina", "--role", "miner",
                                 "--password-stdin"], input=PASSWORD + "\n")
    assert result.exit_code != 0 and "already exists" in result.output
    result = runner.invoke(args=["user", "list"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["mina\tminer\tactive\tgpu"]


# --- the leader lease --------------------------------------------------------------------


def _expire_lease():
    """Make the lease row look like its holder died: expiry in the past."""
    from portal.models import LeaderLease, utcnow

    LeaderLease.update(expires_at=utcnow() - timedelta(seconds=1)).execute()


def test_lease_on_postgres(pg_app):
    from portal.models import LeaderLease
    from scheduler.lease import LEASE_NAME, Lease

    with pg_app.app_context():
        first, second = Lease("node-a", 30), Lease("node-b", 30)
        assert [first.try_acquire(), second.try_acquire()] == [True, False]
        row = LeaderLease.get_by_id(LEASE_NAME)
        assert row.holder == "node-a"

        assert first.try_acquire()  # the holder renews
        assert LeaderLease.get_by_id(LEASE_NAME).expires_at > row.expires_at
        assert not second.try_acquire()
        assert first.record_tick() and not second.record_tick()
        assert LeaderLease.get_by_id(LEASE_NAME).last_tick_at is not None

        _expire_lease()  # node-a dies without releasing
        assert second.try_acquire()
        assert not first.try_acquire()
        assert not first.record_tick()
        assert LeaderLease.get_by_id(LEASE_NAME).holder == "node-b"

        second.release()  # clean shutdown: the follower takes over at once
        assert first.try_acquire()
        assert not second.try_acquire()
        assert LeaderLease.select().count() == 1


def _acquire_at_once(holders):
    """Each holder calls ``try_acquire`` in a thread of its own, all at the same moment."""
    from portal import db
    from scheduler.lease import Lease

    barrier = threading.Barrier(len(holders), timeout=30)

    def contend(holder):
        lease = Lease(holder, 30)
        with db.database.connection_context():  # peewee connections are per thread
            barrier.wait()
            return holder, lease.try_acquire()

    with ThreadPoolExecutor(len(holders)) as pool:
        return list(pool.map(contend, holders))


@pytest.mark.parametrize("row", ["expired", "missing"])
def test_lease_has_one_winner_under_concurrency(pg_app, row):
    from portal.models import LeaderLease
    from scheduler.lease import LEASE_NAME, Lease

    for attempt in range(5):
        with pg_app.app_context():
            if row == "expired":
                Lease(f"dead-{attempt}", 30).try_acquire()
                _expire_lease()
            else:
                LeaderLease.delete().execute()
        results = _acquire_at_once([f"node-{attempt}-{i}" for i in range(8)])
        winners = [holder for holder, won in results if won]
        assert len(winners) == 1, f"attempt {attempt}: {results}"
        with pg_app.app_context():
            assert LeaderLease.get_by_id(LEASE_NAME).holder == winners[0]


# --- logging in --------------------------------------------------------------------------


def test_login_on_postgres(pg_app, pg_accounts):
    client = pg_app.test_client()
    page = client.get("/login")
    assert page.status_code == 200 and 'name="csrf_token"' in page.get_data(as_text=True)
    assert client.get("/miner/login").status_code == 200

    assert login(client, "renter", "rene", "not-the-password").status_code == 401
    response = login(client, "renter", "rene", PASSWORD)
    assert response.status_code == 302 and response.location == "/renter/"
    assert "Rene Renter" in client.get("/renter/").get_data(as_text=True)

    miner = pg_app.test_client()
    response = login(miner, "miner", "mina", PASSWORD)
    assert response.location == "/miner/"
    users_page = miner.get("/miner/users")
    assert users_page.status_code == 200
    assert "rene" in users_page.get_data(as_text=True)


# --- money ---------------------------------------------------------------------------------


def test_metering_and_recharges_at_once_keep_the_books_exact_on_postgres(pg_app, pg_accounts):
    """The ledger's row locks on PostgreSQL: recharges from threads while ``meter`` charges
    the same renter, many times over; ``verify`` finds nothing."""
    from portal import ledger
    from portal.db import database
    from portal.models import Pool, Replica, ResourceSpec, Subtask, Task, User

    ns = 1_000_000_000
    with pg_app.app_context():
        renter = User.get_by_id(pg_accounts["renter"].id)
        spec = ResourceSpec.create(name="tpu", cpu_millis=1000, memory_mib=512,
                                   price_per_hour=7_000_000)
        task = Task.create(user=renter, name="t", image="busybox",
                           pool=Pool.get(Pool.is_default), state="running")
        subtask = Subtask.insert(task=task, role="main", spec=spec, count=4).execute()
        for index in range(4):
            Replica.create(task=task, subtask=subtask, index=index, state="running",
                           started_ns=1_795_000_000 * ns, price_per_hour=7_000_000,
                           last_seen_at=ledger.EPOCH + timedelta(seconds=1_795_000_001))

    def recharge_many():
        with pg_app.app_context(), database.connection_context():
            for _ in range(30):
                ledger.recharge(User.get_by_id(renter.id), 1, None, "top-up")

    def meter_many():
        with pg_app.app_context(), database.connection_context():
            for second in range(2, 32):
                Replica.update(last_seen_at=ledger.EPOCH + timedelta(
                    seconds=1_795_000_000 + second)).where(Replica.task == task.id).execute()
                ledger.meter()

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(recharge_many) for _ in range(3)] + [pool.submit(meter_many)]:
            future.result()
    with pg_app.app_context():
        assert ledger.verify() == []
        assert {r.billed_seconds for r in Replica.select()} == {31}
        Replica.update(state="succeeded", finished_ns=1_795_000_040 * ns).execute()
        ledger.meter()
        assert ledger.verify() == []
        assert all(r.settled and r.charged == ledger.cost(40, 7_000_000)
                   for r in Replica.select())


# --- deleting what is used -------------------------------------------------------------------


def _spec_in_use(pg_app, pg_accounts):
    """The spec "small", used by an ended task of rene's that the ledger charged; the
    miner's API headers."""
    from portal import ledger
    from portal.models import Pool, Replica, ResourceSpec, Subtask, Task, User
    from portal.tokens import create_token

    ns = 1_000_000_000
    with pg_app.app_context():
        spec = ResourceSpec.create(name="small", cpu_millis=1000, memory_mib=1024,
                                   price_per_hour=3_600_000)
        task = Task.create(user=User.get_by_id(pg_accounts["renter"].id), name="t",
                           image="busybox", pool=Pool.get(Pool.is_default), state="succeeded")
        subtask = Subtask.create(task=task, role="main", spec=spec, count=1)
        Replica.create(task=task, subtask=subtask, index=0, state="succeeded",
                       started_ns=1_795_000_000 * ns, finished_ns=1_795_000_060 * ns,
                       price_per_hour=spec.price_per_hour)
        assert ledger.meter() == 1
        token = create_token(pg_accounts["miner"], "test")[1]
    return spec, {"Authorization": f"Bearer {token}"}


def test_deleting_a_used_spec_is_409_on_postgres(pg_app, pg_accounts, monkeypatch):
    """The count refuses, and so does PostgreSQL's RESTRICT when the count missed the rows:
    the savepoint keeps the transaction usable, the rows are counted again and named."""
    from portal import references
    from portal.models import ResourceSpec

    spec, headers = _spec_in_use(pg_app, pg_accounts)
    client = pg_app.test_client()
    message = "'small' is used by 1 task and 1 ledger row."
    response = client.delete(f"/api/v1/specs/{spec.id}", headers=headers)
    assert response.status_code == 409 and response.json["error"]["code"] == "conflict"
    assert message in response.json["error"]["message"]

    real, calls = references.uses_of, []

    def uses_of(row):  # the first count misses the rows
        calls.append(row)
        return real(row) if len(calls) > 1 else []

    monkeypatch.setattr(references, "uses_of", uses_of)
    miner = pg_app.test_client()
    login(miner, "miner", "mina", PASSWORD)
    token = csrf_token(miner, "/miner/specs")
    response = miner.post(f"/miner/specs/{spec.id}/delete", data={"csrf_token": token})
    assert response.status_code == 409
    assert message.replace("'", "&#39;") in response.get_data(as_text=True)
    assert len(calls) == 2  # PostgreSQL refused, and the rows were counted again
    with pg_app.app_context():
        assert ResourceSpec.get_or_none(ResourceSpec.id == spec.id) is not None


def test_a_task_arriving_before_the_delete_is_409_on_postgres(pg_app, pg_accounts, monkeypatch):
    """A task another connection commits between the count and the delete: PostgreSQL
    refuses the delete, and the same transaction counts again and names the task."""
    from portal import references
    from portal.db import database
    from portal.models import Pool, ResourceSpec, Subtask, Task, User
    from portal.tokens import create_token

    with pg_app.app_context():
        spec = ResourceSpec.create(name="late", cpu_millis=1000, memory_mib=1024,
                                   price_per_hour=1)
        token = create_token(pg_accounts["miner"], "test")[1]
    real = references.uses_of

    def submit():
        with pg_app.app_context(), database.connection_context():
            task = Task.create(user=User.get_by_id(pg_accounts["renter"].id), name="t",
                               image="busybox", pool=Pool.get(Pool.is_default))
            Subtask.create(task=task, role="main", spec=spec.id, count=1)

    def uses_of(row):
        found = real(row)
        if not found and Task.select().count() == 0:  # the first count: the task arrives now
            thread = threading.Thread(target=submit)
            thread.start()
            thread.join(10)
            assert not thread.is_alive()
        return found

    monkeypatch.setattr(references, "uses_of", uses_of)
    response = pg_app.test_client().delete(f"/api/v1/specs/{spec.id}",
                                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 409, response.get_data(as_text=True)
    assert "'late' is used by 1 task." in response.json["error"]["message"]
    with pg_app.app_context():
        assert ResourceSpec.get_or_none(ResourceSpec.id == spec.id) is not None


# --- text the database cannot hold ---------------------------------------------------------


def test_nul_and_overrides_are_refused_not_500_on_postgres(pg_app, pg_accounts):
    """PostgreSQL cannot store NUL in text ("A string literal cannot contain NUL"): every
    field that once reached it answers 400 now, by page and by API, and nothing is saved."""
    from portal.models import Group, LedgerEntry, User
    from portal.tokens import create_token

    rene = pg_accounts["renter"].id
    miner = pg_app.test_client()
    login(miner, "miner", "mina", PASSWORD)
    token = csrf_token(miner, "/miner/users")
    with pg_app.app_context():
        before = (LedgerEntry.select().count(), User.select().count(), Group.select().count())
        secret = create_token(pg_accounts["miner"], "fuzz")[1]
    pages = [
        (f"/miner/machine-time/{rene}/recharge", {"recharge-amount": "1",
                                                  "recharge-note": "a\x00b"}),
        (f"/miner/machine-time/{rene}/adjust", {"adjust-amount": "1", "adjust-kind": "adjust",
                                                "adjust-reason": "why\x00"}),
        ("/miner/users", {"name": "nul", "display_name": "N\x00L", "role": "renter"}),
        ("/miner/users", {"name": "rlo", "display_name": "abc\u202etxt.exe",
                          "role": "renter"}),
        ("/miner/groups", {"group-name": "nul", "group-description": "d\x00"}),
    ]
    for path, data in pages:
        response = miner.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 400, (path, data)
    api = pg_app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    for path, body in [(f"/api/v1/billing/renters/{rene}/recharge", {"amount": "1",
                                                                      "note": "a\x00"}),
                       (f"/api/v1/billing/renters/{rene}/adjust", {"amount": "1",
                                                                   "reason": "\x00"})]:
        response = api.post(path, json=body, headers=headers)
        assert response.status_code == 400, (path, response.json)
        assert response.json["error"]["code"] == "invalid_body"
    with pg_app.app_context():
        assert (LedgerEntry.select().count(), User.select().count(),
                Group.select().count()) == before


# --- submitting a task ---------------------------------------------------------------------


def test_a_task_submitted_by_the_api_reads_back_as_answered_on_postgres(pg_app, pg_accounts,
                                                                        monkeypatch):
    """A submission's checks and writes are prepared statements (``portal.db.Prepared``),
    written out for PostgreSQL here: the answer is what reading the task back gives, a
    pool bound to a group is open to its members only, and a refusal is worded as ever."""
    from portal import task_input
    from portal.models import Group, Membership, Node, Pool, PoolGroup, ReplicaEvent, Task, User
    from portal.specs import parse_spec, save_spec
    from portal.task_input import TaskError
    from portal.tasks import create_task
    from portal.tokens import create_token

    with pg_app.app_context():
        lab = Pool.create(name="lab")
        group = Group.create(name="lab-group")
        PoolGroup.create(pool=lab, group=group)
        Node.create(name="box", url="unix:///run/box.sock", cpu_millis=4000, memory_mib=4096,
                    ready=True)
        Node.create(name="big", url="unix:///run/big.sock", cpu_millis=8000, memory_mib=8192,
                    ready=True, pool=lab)
        save_spec(None, parse_spec("small", "1", "1", "1", {}))
        headers = {"Authorization": f"Bearer {create_token(pg_accounts['renter'], 't')[1]}"}
    api = pg_app.test_client()
    body = {"name": "train", "image": "localhost/train:1", "argv": ["true"], "env": {"A": "1"},
            "pool": "default", "subtasks": [{"role": "worker", "spec": "small", "replicas": 2},
                                            {"role": "ps", "spec": "small", "replicas": 1}]}
    monkeypatch.setattr(task_input, "pool_views", None)  # a right one never needs every pool
    answer = api.post("/api/v1/tasks", json=body, headers=headers)
    assert answer.status_code == 201, answer.get_data(as_text=True)
    monkeypatch.undo()
    assert api.get(f"/api/v1/tasks/{answer.json['id']}", headers=headers).json == answer.json
    assert [(r["role"], r["index"]) for r in answer.json["replicas"]] == [
        ("worker", 0), ("worker", 1), ("ps", 0)]
    refused = api.post("/api/v1/tasks", json={**body, "pool": "lab"}, headers=headers)
    assert refused.status_code == 409
    assert refused.json["error"]["fields"] == {"pool": "There is no pool 'lab' open to you."}
    with pg_app.app_context():
        Membership.create(user=pg_accounts["renter"].id, group=group)
    assert api.post("/api/v1/tasks", json={**body, "pool": "lab"},
                    headers=headers).status_code == 201
    with pg_app.app_context():
        assert (Task.select().count(), ReplicaEvent.select().count()) == (2, 6)
        renter = User.get_by_id(pg_accounts["renter"].id)
        with pytest.raises(TaskError) as refused:  # NUL reaches no query PostgreSQL refuses
            create_task(renter, "t", "busybox", ["true"], {}, "lab\x00",
                        [("w", "small\x00", 1)])
        assert set(refused.value.errors) == {"pool", "subtasks[0].spec"}


def test_the_charts_average_samples_per_bucket_on_postgres(pg_app):
    """The buckets of ``portal.series`` (SQL of their own per database) on PostgreSQL."""
    import time
    from datetime import UTC, datetime

    from portal import series
    from portal.models import Node, NodeSample

    with pg_app.app_context():
        box = Node.create(name="box", url="unix:///run/box.sock")
        now = int(time.time())
        NodeSample.insert_many([{"node": box, "at": datetime.fromtimestamp(t, UTC).replace(
            tzinfo=None), "cpu_ratio": 0.2 if t % 2 else 0.4, "chips_held": 1}
            for t in range(now - 600, now)]).execute()
        cpu = series.node_charts(box, "1h")["charts"][0]
        assert 50 <= len(cpu["x"]) <= 51 and all(t % 12 == 0 for t in cpu["x"])
        # (PostgreSQL keeps a FloatField as a real: seven digits)
        assert all(abs(v - 0.3) < 1e-6 for v in cpu["series"][0]["values"][1:-1])
