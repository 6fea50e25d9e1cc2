"""Fixtures every test layer shares: an app on a fresh database, users, a real
Podman API service with a locally built image, a live server, and Chromium.

Nothing here is mocked: the database is a real SQLite file (or PostgreSQL,
see ``postgres_url``), Podman is a real ``podman system service``, the live
server is the real ``flask --app app serve``, the browser is Debian's Chromium.

What every test would make again the same way is made once per session and copied:
the migrated database of ``app``, the hash of ``PASSWORD``, the database of a live
server with its accounts. Each test still gets a database of its own.
"""

import functools
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
import requests

from scheduler.images import import_busybox
from scheduler.jupyter_image import build_jupyter_image
from scheduler.podman import PodmanBackend
from scheduler.podman_service import LocalPodmanService, podman_env
from tests.monitoring import monitoring_stack
from tests.slurm_cluster import skip_unless_installed, start_cluster, start_podman_cluster
from tests.support import fund, fund_on, wait_for

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
TEST_IMAGE = "localhost/hourglass-test-busybox:latest"
JUPYTER_IMAGE = "localhost/hourglass-jupyter:latest"  # HOURGLASS_JUPYTER_IMAGE's default
TEST_LABEL = "hourglass.test"
PASSWORD = "correct-horse-battery"
CHROMIUM = "/usr/bin/chromium"


# --- the app on a fresh database ---------------------------------------------------------


def copy_database(template, target):
    """Copy the SQLite database file ``template`` to ``target`` (SQLite's backup API, which
    also copies what the template's write-ahead log still holds)."""
    with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(target)) as copy:
        source.backup(copy)


def use_instance(folder, monkeypatch):
    """Point the app at instance ``folder``, with no settings leaking in from the caller's
    shell."""
    for name in list(os.environ):
        if name.startswith("HOURGLASS_") or name in {"DATABASE_URL", "SECRET_KEY", "PROMETHEUS_URL",
                                                     "GRAFANA_URL", "GRAFANA_TOKEN"}:
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOURGLASS_INSTANCE", str(folder))


@pytest.fixture
def instance(tmp_path, monkeypatch):
    """An empty instance folder, and no settings leaking in from the caller's shell."""
    folder = tmp_path / "instance"
    folder.mkdir()
    use_instance(folder, monkeypatch)
    return folder


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory):
    """A SQLite database with every migration applied, made once; ``app`` copies it."""
    from app import create_app
    from portal import db

    folder = tmp_path_factory.mktemp("migrated")
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_instance(folder, monkeypatch)
        template = create_app({"TESTING": True})
        with template.app_context():
            db.upgrade()
        db.database.close()
    return folder / "hourglass.db"


@pytest.fixture
def app(instance, migrated_database):
    """The app on a database of its own: a copy of ``migrated_database`` in ``instance``
    (``DATABASE_URL``, where a test sets it, still wins), brought up to date as ever."""
    from app import create_app
    from portal import db

    copy_database(migrated_database, instance / "hourglass.db")
    app = create_app({"TESTING": True})
    with app.app_context():
        db.upgrade()
    yield app
    db.database.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@functools.cache
def password_hash():
    """The hash of ``PASSWORD``, made once: hashing a password takes scrypt a tenth of a
    second, on purpose."""
    from werkzeug.security import generate_password_hash

    return generate_password_hash(PASSWORD)


def create_accounts(app):
    """A miner ``mina`` and a renter ``rene``, both with password ``PASSWORD``: the rows
    ``create_user`` writes, with the hash of ``password_hash``."""
    from portal.models import User

    def create(name, role, display_name):
        return User.create(name=name, role=role, display_name=display_name,
                           password_hash=password_hash())

    with app.app_context():
        return {
            "miner": create("mina", "miner", "Mina Miner"),
            "renter": fund(create("rene", "renter", "Rene Renter")),
        }


@pytest.fixture
def accounts(app):
    return create_accounts(app)


# --- real Podman -------------------------------------------------------------------------


def _podman(conf, *argv, check=True):
    return subprocess.run(["podman", *argv], env=podman_env(conf), check=check,
                          capture_output=True, text=True)


@contextmanager
def running_podman_service(folder):
    """A real Podman API service with the project's config, for the ``with`` block."""
    service = LocalPodmanService(folder).start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def podman_service(tmp_path_factory):
    """The session's Podman API service; test containers are removed at the end."""
    with running_podman_service(tmp_path_factory.mktemp("podman")) as service:
        yield service
        leftovers = _podman(service.conf, "ps", "-aq", "--filter", f"label={TEST_LABEL}",
                            check=False).stdout.split()
        if leftovers:
            _podman(service.conf, "rm", "-f", "-t", "0", *leftovers, check=False)
        # Task networks the tests left; one still in use is refused, so nothing live goes.
        networks = _podman(service.conf, "network", "ls", "-q", "--filter",
                           "label=hourglass.task", check=False).stdout.split()
        for network in networks:
            _podman(service.conf, "network", "rm", network, check=False)


@pytest.fixture
def own_podman_service(tmp_path):
    """A Podman API service of this test's own, which the test may stop."""
    with running_podman_service(tmp_path / "own-podman") as service:
        yield service


@pytest.fixture(scope="session")
def test_image(podman_service):
    """A busybox image built without any registry (an import), kept between runs."""
    backend = PodmanBackend(podman_service.url)
    if not backend.image_exists(TEST_IMAGE):
        import_busybox(backend, TEST_IMAGE)
    return TEST_IMAGE


@pytest.fixture(scope="session")
def jupyter_image(podman_service):
    """The JupyterLab image, built if missing (``make test`` builds it before the tests)."""
    return build_jupyter_image(JUPYTER_IMAGE, podman_env(podman_service.conf))


# --- a live server -----------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``flask --app app serve`` in its own process group, as ``make run`` starts it."""

    def __init__(self, instance, env, log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The notebook proxy's origin: a second port of the same server.
        self.notebook_port = free_port()
        while self.notebook_port == self.port:
            self.notebook_port = free_port()
        self.notebook_url = f"http://127.0.0.1:{self.notebook_port}"
        self.log_path = log_path
        merged = {**os.environ, **env, "HOURGLASS_INSTANCE": str(instance),
                  "HOST": "127.0.0.1", "PORT": str(self.port),
                  "HOURGLASS_NOTEBOOK_PORT": str(self.notebook_port)}
        self.env = {k: v for k, v in merged.items() if v is not None}
        self.process = None

    def flask(self, *argv, stdin=None):
        """Run a ``flask --app app`` command against the same instance and database."""
        return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *argv],
                              env=self.env, cwd=ROOT, input=stdin, capture_output=True,
                              text=True, check=True)

    def start(self):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "app", "serve"], env=self.env,
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._answers, timeout=30, what=f"the live server on {self.url}")
        return self

    def _answers(self):
        if self.process.poll() is not None:
            raise AssertionError(f"server exited:\n{self.log()}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code in (200, 503)
        except (requests.ConnectionError, requests.Timeout):  # not up yet, or a busy machine
            return False

    def health(self):
        return requests.get(f"{self.url}/healthz", timeout=5).json()

    def log(self):
        return Path(self.log_path).read_text(errors="replace")

    def container(self, replica_id):
        """The name of replica ``replica_id``'s container, as the server stored it."""
        with closing(sqlite3.connect(Path(self.env["HOURGLASS_INSTANCE"]) / "hourglass.db")) as db:
            return db.execute("SELECT container FROM replicas WHERE id = ?",
                              (replica_id,)).fetchone()[0]

    def kill(self, sig=signal.SIGKILL):
        """Signal the whole process group (gunicorn master and workers)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(15)

    def stop(self):
        self.kill(signal.SIGINT)

    def close(self):
        """Stop it at the end of a test: SIGINT to gunicorn's master alone, which stops its
        workers. (``stop`` is Ctrl-C, to the whole group: a worker that gets the master's
        SIGQUIT while it still handles its own SIGINT may hang until the master kills it,
        after the graceful timeout of 10 s.)"""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(15)


def add_accounts(server):
    """Migrate ``server``'s database and add mina (miner) and rene (renter, funded) with
    ``PASSWORD``, through its ``flask`` commands."""
    server.flask("db", "upgrade")
    server.flask("user", "add", "mina", "--role", "miner", "--password-stdin", stdin=PASSWORD)
    server.flask("user", "add", "rene", "--role", "renter", "--password-stdin", stdin=PASSWORD)
    fund_on(server, "rene")


@pytest.fixture(scope="session")
def live_database(tmp_path_factory, podman_service):
    """The database of a new live server with its accounts (``add_accounts``), made once by
    the same commands; ``make(accounts=True)`` starts a server on a copy of it."""
    folder = tmp_path_factory.mktemp("live-database")
    add_accounts(LiveServer(folder, {"HOURGLASS_PODMAN_URL": podman_service.url},
                            folder / "commands.log"))
    return folder / "hourglass.db"


@contextmanager
def live_servers(folder, podman_service, request):
    """``make``, for the ``with`` block: live servers sharing one instance folder and
    database (under ``folder``, with their logs); all stopped at the end."""
    shared_instance = folder / "live-instance"
    shared_instance.mkdir()
    servers = []

    def make(instance=shared_instance, accounts=False, **env):
        """A server on ``instance``; an env value of None unsets that variable. With
        ``accounts``, its database starts as a copy of ``live_database``."""
        env = {"HOURGLASS_PODMAN_URL": podman_service.url, **env}
        server = LiveServer(instance, env, folder / f"server-{len(servers)}.log")
        servers.append(server)
        if accounts:
            copy_database(request.getfixturevalue("live_database"),
                          Path(instance) / "hourglass.db")
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def live_server_factory(tmp_path, podman_service, request):
    """Make live servers sharing one instance folder and database; all stopped at the end."""
    with live_servers(tmp_path, podman_service, request) as make:
        yield make


# What a module's shared server allows: its tests together sign in more often than the
# default LOGIN_RATE_LIMIT lets one address, which each of them alone stays under.
SHARED_LOGIN_RATE_LIMIT = "1000000 per minute"


@pytest.fixture(scope="module")
def module_live_server_factory(tmp_path_factory, podman_service, request):
    """``live_server_factory`` for what a module's tests share: its servers stop when the
    module's tests are done."""
    with live_servers(tmp_path_factory.mktemp("module-servers"), podman_service,
                      request) as make:
        yield make


@pytest.fixture(scope="module")
def module_live_server(module_live_server_factory):
    """The live server of a module's tests marked ``shared_server``: started once, on a copy
    of ``live_database``; what one test changes, the next one sees."""
    return module_live_server_factory(
        accounts=True, HOURGLASS_LOGIN_RATE_LIMIT=SHARED_LOGIN_RATE_LIMIT).start()


@pytest.fixture
def live_server(request):
    """One started live server with the accounts of ``add_accounts`` (mina, rene); the
    module's ``module_live_server`` for a test marked ``shared_server``."""
    if request.node.get_closest_marker("shared_server"):
        return request.getfixturevalue("module_live_server")
    return request.getfixturevalue("live_server_factory")(accounts=True).start()


# --- real Prometheus ---------------------------------------------------------------------


@pytest.fixture
def prometheus(tmp_path):
    """Start real Prometheus servers and node-exporters for a test (tests.monitoring):
    ``prometheus(hourglass=["127.0.0.1:<port>"])`` scrapes those /metrics every second and
    returns the ready server (``.url``); ``prometheus(config=path)`` runs that config;
    ``prometheus.node_exporter()``. All stopped at the end."""
    with monitoring_stack(tmp_path / "monitoring") as start:
        yield start


# --- a real Slurm cluster ----------------------------------------------------------------


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real two-node Slurm cluster for the session (tests.slurm_cluster), stopped at the end.
    Its Epilog appends "job=<id> het=<leader id, if any> node=<node>" to ``.root /
    "epilog.log"`` each time a job (or a heterogeneous job's component) ends on a node."""
    skip_unless_installed()
    root = tmp_path_factory.mktemp("slurm")
    epilog = root / "epilog"
    epilog.write_text('#!/bin/sh\n'
                      'echo "job=$SLURM_JOB_ID het=$SLURM_HET_JOB_ID node=$SLURMD_NODENAME" >> '
                      f"{shlex.quote(str(root / 'epilog.log'))}\n")
    epilog.chmod(0o755)
    cluster = start_cluster(root, epilog=epilog)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def slurm_podman_cluster(tmp_path_factory, podman_service):
    """A real two-node Slurm cluster of the test module's own whose Epilog is Hourglass's, on
    the session's Podman service (``tests.slurm_cluster.start_podman_cluster``)."""
    skip_unless_installed()
    cluster = start_podman_cluster(tmp_path_factory.mktemp("slurm-podman"), podman_service.url)
    yield cluster
    cluster.stop()


# --- Chromium ----------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request, live_server_factory):
    """A fresh browser context and page; a screenshot lands in tests/artifacts on failure.

    Made after ``live_server_factory``, so it is closed before the test's servers stop: a
    connection the browser still holds open keeps a stopping server's worker until gunicorn
    kills it, after its graceful timeout (10 s)."""
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / f"{request.node.name}.png", full_page=True)
    context.close()
