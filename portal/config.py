"""Settings from environment variables, with safe defaults.

Every setting Hourglass reads is listed here (and in the README). The secret
key is never a default: it comes from ``SECRET_KEY`` or is generated once
into the instance folder with mode 0600.
"""

import hashlib
import os
import re
import secrets
from pathlib import Path

from portal import values

# Keys that tutorials and sample configs ship with; refusing them stops a
# copied example from signing real sessions.
WEAK_KEYS = {"dev", "secret", "changeme", "change-me", "development", "test", "key", "password"}
MIN_KEY_LENGTH = 32


class ConfigError(RuntimeError):
    """A setting is missing or unsafe; the message says which and how to fix it."""


def _env_bool(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "on", "true", "yes"}


def local_podman_socket(instance_path):
    """Where the Podman service that ``make run`` starts for ``instance_path`` listens.

    Not in the instance folder: podman-py puts the socket path, URL-encoded, in
    a host name, which may not exceed 63 characters. So a short runtime path
    named after the instance folder (one service per instance).
    """
    digest = hashlib.sha256(str(Path(instance_path).resolve()).encode()).hexdigest()[:12]
    if os.geteuid() == 0:
        runtime = Path("/run/hourglass")
    elif os.environ.get("XDG_RUNTIME_DIR"):
        runtime = Path(os.environ["XDG_RUNTIME_DIR"]) / "hourglass"
    else:
        runtime = Path(f"/tmp/hourglass-{os.getuid()}")
    return runtime / f"podman-{digest}.sock"


def _port(name, default):
    value = os.environ.get(name, default).strip()
    try:
        return values.whole_number(value, 1, 65535)
    except values.ValueProblem:
        raise ConfigError(f"{name} must be a TCP port number (1-65535), not {value!r}.") \
            from None


def _size(name, default):
    """``name``'s whole number (bytes, a count) of at least 1."""
    value = os.environ.get(name, str(default)).strip()
    try:
        return values.whole_number(value, 1, 2**62)
    except values.ValueProblem:
        raise ConfigError(f"{name} must be a whole number of at least 1, not {value!r}.") \
            from None


def _port_range(name, default):
    """``name``'s ``FIRST-LAST`` TCP ports (both included) as a range."""
    value = os.environ.get(name, default).strip()
    first, _, last = value.partition("-")
    try:
        first, last = (values.whole_number(port, 1, 65535) for port in (first, last))
    except values.ValueProblem:
        first, last = 1, 0
    if first > last:
        raise ConfigError(f"{name} must be FIRST-LAST TCP ports (e.g. 30000-32767), "
                          f"not {value!r}.")
    return range(first, last + 1)


def _base_url(name):
    """``name``'s URL without a trailing slash; "" when unset (then derived per request)."""
    value = os.environ.get(name, "").strip().rstrip("/")
    if value and not (value.startswith(("http://", "https://")) and "?" not in value
                      and "#" not in value):
        raise ConfigError(f"{name} must be an http:// or https:// base URL, not {value!r}.")
    return value


def _duration(name, default):
    """``name``'s Prometheus duration: a whole number and a unit (e.g. 30d, 12h)."""
    value = os.environ.get(name, default).strip()
    if not re.fullmatch(r"[1-9][0-9]{0,8}(ms|s|m|h|d|w|y)", value):
        raise ConfigError(f"{name} must be a whole number and a unit (s, m, h, d, w, y; "
                          f"e.g. 30d), not {value!r}.")
    return value


def _metrics_token():
    """``HOURGLASS_METRICS_TOKEN``: "" (none) or a secret long enough not to be guessed."""
    token = os.environ.get("HOURGLASS_METRICS_TOKEN", "").strip()
    if token and (len(token) < 16 or token.lower() in WEAK_KEYS):
        raise ConfigError("HOURGLASS_METRICS_TOKEN must be at least 16 characters and not a "
                          "well-known word (e.g. `openssl rand -hex 24`).")
    return token


def from_environment(instance_path):
    """Return the settings dict for an app whose instance folder is ``instance_path``."""
    instance = Path(instance_path)
    port = _port("PORT", "8000")
    return {
        # The portal's port, and the second port of the same process where the notebook
        # proxy answers: a separate origin, so code in a notebook never reads portal cookies.
        "PORT": port,
        "NOTEBOOK_PORT": _port("HOURGLASS_NOTEBOOK_PORT", str(port + 1)),
        # Public base URLs of the two origins; "" = the same scheme and host name as the
        # request, on the other origin's port.
        "NOTEBOOK_URL": _base_url("HOURGLASS_NOTEBOOK_URL"),
        "PORTAL_URL": _base_url("HOURGLASS_PORTAL_URL"),
        "DATABASE_URL": os.environ.get("DATABASE_URL", f"sqlite:///{instance / 'hourglass.db'}"),
        "PODMAN_URL": os.environ.get(
            "HOURGLASS_PODMAN_URL", f"unix://{local_podman_socket(instance)}"
        ),
        "SCHEDULER_ENABLED": _env_bool("HOURGLASS_SCHEDULER", False),
        "SCHEDULER_TICK_SECONDS": float(os.environ.get("HOURGLASS_TICK_SECONDS", "5")),
        "DISCOVERY_SECONDS": float(os.environ.get("HOURGLASS_DISCOVERY_SECONDS", "30")),
        # A replica whose node has not answered for this long is lost.
        "LOST_SECONDS": float(os.environ.get("HOURGLASS_LOST_SECONDS", "60")),
        # How old /healthz's view of Podman may be: it asks Podman at most this often.
        "HEALTH_SECONDS": float(os.environ.get("HOURGLASS_HEALTH_SECONDS", "5")),
        "HOST_ROOT": os.environ.get("HOURGLASS_HOST_ROOT", "/"),
        "PEER_PORTS": _port_range("HOURGLASS_PEER_PORTS", "30000-32767"),
        "DATA_ROOT": os.path.abspath(os.environ.get("HOURGLASS_DATA", instance / "data")),
        # Archives unpacked (algorithms, datasets): at most this many bytes and members.
        "UNPACK_MAX_BYTES": _size("HOURGLASS_UNPACK_MAX_BYTES", 20 * 2**30),
        "UNPACK_MAX_FILES": _size("HOURGLASS_UNPACK_MAX_FILES", 100_000),
        # The largest file one restartable upload may send.
        "UPLOAD_MAX_BYTES": _size("HOURGLASS_UPLOAD_MAX_BYTES", 50 * 2**30),
        # A renter's image build from a Containerfile is stopped after this long.
        "IMAGE_BUILD_SECONDS": _size("HOURGLASS_IMAGE_BUILD_SECONDS", 1800),
        "PROBE_IMAGE": os.environ.get("HOURGLASS_PROBE_IMAGE", "localhost/hourglass-probe:latest"),
        "JUPYTER_IMAGE": os.environ.get("HOURGLASS_JUPYTER_IMAGE",
                                        "localhost/hourglass-jupyter:latest"),
        # Tests only: "module:function" building the JupyterLab image instead of the real
        # build (scheduler.image_builds), so a browser test's build takes a second.
        "IMAGE_BUILDER": os.environ.get("HOURGLASS_IMAGE_BUILDER", ""),
        # Who may read /metrics: a scraper sending this bearer token, and any client on a
        # loopback address while METRICS_LOOPBACK is on.
        "METRICS_TOKEN": _metrics_token(),
        "METRICS_LOOPBACK": _env_bool("HOURGLASS_METRICS_LOOPBACK", True),
        # The leader reads every node's, replica's and chip's use this often into the
        # database (the built-in charts; /metrics's per replica and per chip gauges).
        "SAMPLE_SECONDS": float(os.environ.get("HOURGLASS_SAMPLE_SECONDS", "15")),
        # The lab's Prometheus (its HTTP API): charts read it when set; "" = none, unless
        # `flask monitoring run` (make monitoring) started one for this instance.
        "PROMETHEUS_URL": _base_url("PROMETHEUS_URL"),
        # What `flask monitoring run` runs: Prometheus on 127.0.0.1:PROMETHEUS_PORT keeping
        # PROMETHEUS_RETENTION (a Prometheus duration) of data, scraping node-exporter on
        # every node at NODE_EXPORTER_PORT; MONITORING: `flask serve` runs it alongside.
        "PROMETHEUS_PORT": _port("HOURGLASS_PROMETHEUS_PORT", "9090"),
        "PROMETHEUS_RETENTION": _duration("HOURGLASS_PROMETHEUS_RETENTION", "30d"),
        "NODE_EXPORTER_PORT": _port("HOURGLASS_NODE_EXPORTER_PORT", "9100"),
        "MONITORING": _env_bool("HOURGLASS_MONITORING", False),
        # The lab's Grafana and a service-account token: Hourglass provisions its data
        # source and dashboards there and embeds their panels in the miner's pages.
        "GRAFANA_URL": _base_url("GRAFANA_URL"),
        "GRAFANA_TOKEN": os.environ.get("GRAFANA_TOKEN", "").strip(),
        "LEADER_LEASE_SECONDS": float(os.environ.get("HOURGLASS_LEASE_SECONDS", "15")),
        "LOGIN_RATE_LIMIT": os.environ.get("HOURGLASS_LOGIN_RATE_LIMIT", "10 per minute"),
        "RATELIMIT_STORAGE_URI": os.environ.get("HOURGLASS_RATELIMIT_STORAGE", "memory://"),
        "SESSION_COOKIE_SECURE": _env_bool("HOURGLASS_SECURE_COOKIES", False),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_TIME_LIMIT": None,
        "LANGUAGES": ["en", "zh_CN"],
        "BABEL_TRANSLATION_DIRECTORIES": str(Path(__file__).parent / "translations"),
    }


def load_secret_key(instance_path):
    """Return ``SECRET_KEY`` from the environment or the instance folder.

    Generates ``instance/secret_key`` (0600) on first use. Raises ConfigError
    for a key that is short or well known, wherever it came from.
    """
    key = os.environ.get("SECRET_KEY")
    if key is None:
        path = Path(instance_path) / "secret_key"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
        key = path.read_text().strip()
    if key.lower() in WEAK_KEYS or len(key) < MIN_KEY_LENGTH:
        raise ConfigError(
            f"SECRET_KEY is too weak (a known example or under {MIN_KEY_LENGTH} characters); "
            "unset it to have one generated into the instance folder."
        )
    return key
