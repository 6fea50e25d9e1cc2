"""Hourglass: ``create_app()``, the module-level ``app`` for gunicorn, and ``serve``.

The only module that imports both ``portal`` and ``scheduler``: it wires the
scheduler and the container backend into ``app.extensions`` where the portal
finds them. ``flask --app app serve`` is what ``make run`` calls.
"""

import atexit
import logging
import os
from pathlib import Path

import click
from flask import Flask, render_template
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from htmx_flask import Htmx

from portal import (
    account,
    auth,
    db,
    grafana,
    health,
    i18n,
    ledger,
    metrics,
    presenters,
    prometheus_stack,
    proxy,
    samples,
    security_headers,
    settings,
    tokens,
    uploads,
    users,
    version_sweep,
)
from portal.api.blueprint import bp as api_bp
from portal.config import from_environment, load_secret_key
from portal.extensions import csrf, limiter
from portal.miner.blueprint import area as miner_area
from portal.miner.blueprint import bp as miner_bp
from portal.renter.blueprint import area as renter_area
from portal.renter.blueprint import bp as renter_bp
from portal.signals import nodes_changed, tasks_changed
from scheduler.console import Containers
from scheduler.discovery import Discovery
from scheduler.engine_status import EngineStatus
from scheduler.image_builds import for_app as image_builds_for_app
from scheduler.images import images_cli
from scheduler.podman import PodmanBackend
from scheduler.podman_service import LocalPodmanService
from scheduler.reconcile import Reconciler
from scheduler.renter_images import for_app as renter_images_for_app
from scheduler.sampling import Sampler
from scheduler.service import SchedulerService
from scheduler.slurm_discovery import discover_clusters
from scheduler.slurm_rest import client_for as slurm_client_for
from scheduler.watch import EventWatcher

AREAS = {"miner": miner_area, "renter": renter_area}
ERRORS = {
    400: _l("The request was not understood (a form may have expired: reload the page)."),
    403: _l("You may not open this page."),
    404: _l("There is nothing here."),
    405: _l("This address does not answer that kind of request."),
    429: _l("Too many attempts. Wait a minute and try again."),
}


def create_app(test_config=None):
    """Build the app from environment settings, overridden by ``test_config``."""
    root = Path(__file__).resolve().parent
    instance = os.path.abspath(os.environ.get("HOURGLASS_INSTANCE", root / "instance"))
    app = Flask(__name__, instance_path=instance)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.update(from_environment(app.instance_path))
    app.config.update(test_config or {})
    if "SECRET_KEY" not in (test_config or {}):
        app.config["SECRET_KEY"] = load_secret_key(app.instance_path)

    db.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    security_headers.init_app(app)
    Htmx(app)
    auth.init_app(app)
    i18n.init_app(app)
    users.init_app(app)
    tokens.init_app(app)
    settings.init_app(app)
    ledger.init_app(app)
    presenters.init_app(app)
    app.register_blueprint(account.bp)
    app.register_blueprint(health.bp)
    metrics.init_app(app)
    app.register_blueprint(api_bp)
    app.register_blueprint(miner_bp)
    app.register_blueprint(renter_bp)
    _init_pages(app)
    _init_scheduler(app)
    # The notebook port's requests go to the notebook proxy's own app (another origin).
    proxy.init_app(app)
    app.cli.add_command(serve_command)
    app.cli.add_command(images_cli)
    app.cli.add_command(grafana.grafana_cli)
    prometheus_stack.init_app(app)
    return app


def _init_pages(app):
    @app.context_processor
    def navigation():
        role = current_user.role if current_user.is_authenticated else None
        return {"area": AREAS.get(role)}

    def error_page(exc):
        return render_template("error.html", code=exc.code, message=ERRORS[exc.code]), exc.code

    for code in ERRORS:
        app.register_error_handler(code, error_page)


def _housekeeping(app):
    """The leader's hourly chores: uploads left unfinished for a day go, and so do what
    interrupted changes of algorithms and datasets left; images whose addition ended with
    its process are marked failed; samples past the miner's retention go; the lab's Grafana,
    when configured, gets Hourglass's data source and dashboards (once per process; it never
    raises)."""
    with app.app_context(), db.database.connection_context():
        uploads.sweep()
        version_sweep.sweep()
        app.extensions["hourglass.renter_images"].fail_stale()
        samples.prune()
        grafana.keep_provisioned(app)


def _init_scheduler(app):
    backend = PodmanBackend(app.config["PODMAN_URL"])
    discovery = Discovery(
        local_url=app.config["PODMAN_URL"],
        host_root=Path(app.config["HOST_ROOT"]),
        probe_image=app.config["PROBE_IMAGE"],
        clusters=discover_clusters,  # the Slurm clusters' nodes, from their slurmrestd
    )
    # The histograms of /metrics (portal.metrics.Timings), observed as the scheduler works.
    timings = app.extensions["hourglass.timings"]
    reconciler = Reconciler(local_url=app.config["PODMAN_URL"],
                            host_root=Path(app.config["HOST_ROOT"]),
                            data_root=Path(app.config["DATA_ROOT"]),
                            peer_ports=app.config["PEER_PORTS"],
                            lost_after=app.config["LOST_SECONDS"],
                            timings=timings)
    # A container of ours ended on some node: look at once, not a tick later.
    watcher = EventWatcher(PodmanBackend, lambda event: service.wake())
    service = SchedulerService(
        enabled=app.config["SCHEDULER_ENABLED"],
        tick_seconds=app.config["SCHEDULER_TICK_SECONDS"],
        lease_seconds=app.config["LEADER_LEASE_SECONDS"],
        discovery=discovery,
        discovery_seconds=app.config["DISCOVERY_SECONDS"],
        reconciler=reconciler,
        watcher=watcher,
        housekeeping=lambda: _housekeeping(app),
        timings=timings,
        # The readings the built-in charts draw, of the nodes, replicas and local chips.
        sampler=Sampler(app.config["PODMAN_URL"], host_root=Path(app.config["HOST_ROOT"])),
        sample_seconds=app.config["SAMPLE_SECONDS"],
    )
    # What /healthz says of Podman: the last look, taken again at most every HEALTH_SECONDS.
    app.extensions["hourglass.engine"] = EngineStatus(backend, app.config["HEALTH_SECONDS"])
    app.extensions["hourglass.scheduler"] = service
    # A Slurm cluster's slurmrestd client (portal.slurm tests a connection, lists partitions).
    app.extensions["hourglass.slurm"] = slurm_client_for
    # Replicas' logs and consoles on whichever node runs them (the pages' own connections).
    app.extensions["hourglass.containers"] = Containers()
    # Builds of the JupyterLab image, started from the miner's Images page.
    app.extensions["hourglass.image_builds"] = image_builds_for_app(app)
    # The renter's images: uploads loaded, builds, saved notebooks, copies, removals.
    app.extensions["hourglass.renter_images"] = renter_images_for_app(app)

    def rediscover(sender, **extra):
        service.request_discovery()

    def wake(sender, **extra):
        service.wake()

    # The Nodes page sends it when a node is added, removed, enabled or disabled.
    nodes_changed.connect(rediscover, sender=app, weak=False)
    # A task was submitted or asked to stop: place and start at once.
    tasks_changed.connect(wake, sender=app, weak=False)
    if service.enabled:
        service.start()
        atexit.register(service.shutdown)


def _preflight(app):
    """Discover the local node now, canary included, and say before the first page whether
    it can run replicas (a renter's task is never the first thing to find out)."""
    url = os.environ["HOURGLASS_PODMAN_URL"]
    discovery = Discovery(local_url=url, host_root=Path(app.config["HOST_ROOT"]),
                          probe_image=app.config["PROBE_IMAGE"])
    for finding in discovery.run(local_only=True).values():
        if finding.ready:
            click.echo(f"Preflight: the local node runs containers as replicas need them "
                       f"(Podman {finding.info.podman_version}).")
        else:
            click.echo(f"WARNING: the local node cannot run replicas: {finding.reason}",
                       err=True)


def __getattr__(name):
    """``app`` for gunicorn and ``flask --app app``, built on first use, not on import."""
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)


@click.command("serve")
def serve_command():
    """Start Hourglass as ``make run`` does: Podman service, migrations, first miner, gunicorn.

    Listens on HOST:PORT (127.0.0.1:8000) and, for the notebook proxy, on
    HOST:HOURGLASS_NOTEBOOK_PORT (PORT + 1). Starts a Podman API service in the
    instance folder unless HOURGLASS_PODMAN_URL names one, and stops it on exit.
    """
    from flask import current_app
    from gunicorn.app.base import BaseApplication

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Not a line per tick, nor per wake that finds a pass running (it runs again).
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    instance = current_app.instance_path
    current_app.extensions["hourglass.scheduler"].shutdown()  # workers run their own
    service = None
    if "HOURGLASS_PODMAN_URL" not in os.environ:
        service = LocalPodmanService(instance).start()
        os.environ["HOURGLASS_PODMAN_URL"] = service.url
    os.environ.setdefault("HOURGLASS_SCHEDULER", "on")
    os.environ["HOURGLASS_INSTANCE"] = instance
    # The workers' histograms, summed by whichever worker /metrics reaches.
    metrics.use_multiprocess(Path(instance) / "prometheus-multiproc")
    monitoring = None
    try:
        db.upgrade()
        password = users.ensure_first_miner()
        if password:
            click.echo(f"Created the first miner account '{users.FIRST_MINER}'. "
                       f"Its password, shown this once: {password}")
        _preflight(current_app)
        host = os.environ.get("HOST", "127.0.0.1")
        port, notebook_port = current_app.config["PORT"], current_app.config["NOTEBOOK_PORT"]
        if notebook_port == port:
            raise click.UsageError("HOURGLASS_NOTEBOOK_PORT must differ from PORT: notebooks "
                                   "need an origin of their own.")
        click.echo(f"Hourglass on http://{host}:{port}/  (miners: /miner/login); "
                   f"notebooks on port {notebook_port}")
        if current_app.config["MONITORING"]:  # `make run MONITORING=1`
            monitoring = prometheus_stack.start_beside(current_app)

        class Server(BaseApplication):
            def load_config(self):
                # The portal, and the notebook proxy's origin (dispatched by port).
                self.cfg.set("bind", [f"{host}:{port}", f"{host}:{notebook_port}"])
                self.cfg.set("worker_class", "gthread")
                self.cfg.set("workers", int(os.environ.get("HOURGLASS_WORKERS", "1")))
                self.cfg.set("threads", int(os.environ.get("HOURGLASS_THREADS", "32")))
                self.cfg.set("graceful_timeout", 10)
                # Keep idle connections 5 s, not gunicorn's 2: htmx polls every 2 s, and a
                # connection closed at 2 s may already carry the next request.
                self.cfg.set("keepalive", 5)
                # gunicorn's control socket is one path per user: two instances would clash.
                self.cfg.set("control_socket_disable", True)
                self.cfg.set("child_exit", metrics.worker_exited)

            def load(self):
                return create_app()

        Server().run()
    finally:
        if monitoring:
            monitoring.stop()
        if service:
            service.stop()
