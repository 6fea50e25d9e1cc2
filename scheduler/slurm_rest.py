"""The client of a Slurm cluster's slurmrestd (Slurm 22.05, ``openapi/v0.0.38``; docs/slurm.md).

``SlurmClient`` speaks HTTP over slurmrestd's unix socket (``unix:///path``, ``rest_auth/local``:
no credentials, jobs run as slurmrestd's user) or over TCP (``http(s)://host:port``,
``rest_auth/jwt``: ``X-SLURM-USER-NAME`` and ``X-SLURM-USER-TOKEN`` on every request). Its
answers come back as dataclasses (``SlurmNode``, ``SlurmJob``) with Slurm's strings parsed:
GRES (``tpu:bm1684x:3``), a job's chips by node (``gres_detail``: ``tpu:bm1684x:2(IDX:0,2)``,
one entry per node of the job's hostlist).

Every failure raises ``portal.slurm.SlurmError`` with a plain sentence: slurmrestd not
answering, refusing the credentials, an HTTP error, or the ``errors`` Slurm put in its answer
(their shapes differ by call: ``error``/``error_number``/``description`` on loads,
``error_code`` on submit, ``errno`` on nodes). The token is never logged nor put in an error.
"""

import http.client
import json
import logging
import re
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from portal.slurm import SlurmError

log = logging.getLogger(__name__)

API = "/slurm/v0.0.38"
# The environment of a job component that brings none: slurmrestd requires one per component
# and passes nothing of its own.
DEFAULT_ENVIRONMENT = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
INVALID_JOB_ID = 2017  # ESLURM_INVALID_JOB_ID: a job Slurm does not know (any more)


@dataclass
class SlurmNode:
    """A node as slurmrestd lists it. ``state`` is Slurm's lowercase base state (idle, mixed,
    allocated, down...), ``flags`` its uppercase flags (DRAIN, NOT_RESPONDING...; a drained
    node is ``idle`` with ``DRAIN``); ``gres``: {(name, type): count}, type "" when untyped."""

    name: str
    address: str
    hostname: str
    state: str
    flags: list[str]
    cpus: int
    memory_mib: int
    gres: dict[tuple[str, str], int]
    partitions: list[str]
    reason: str


@dataclass
class SlurmJob:
    """A job (or one component of a heterogeneous job) as slurmrestd shows it.

    ``het_job_id`` is the leader's id (None for a plain job), ``het_offset`` the component's
    place (0 for the leader). ``reason`` is Slurm's pending reason ("" for its "None").
    ``nodes`` is the hostlist expanded; ``gres_detail`` the chips held on each of them:
    {node: {(name, type): [index, ...]}}, an index being the position in gres.conf's ``File=``
    list (empty once the job ended). ``start``/``end`` are epoch seconds (None when not
    known; a running job's ``end`` is when its time limit ends it). ``exit_code``: the batch
    script's exit status, 128 + the signal that killed it."""

    id: int
    het_job_id: int | None
    het_offset: int
    state: str
    reason: str
    partition: str
    nodes: list[str]
    gres_detail: dict[str, dict[tuple[str, str], list[int]]] = field(default_factory=dict)
    start: int | None = None
    end: int | None = None
    exit_code: int = 0
    name: str = ""


class SlurmRefused(SlurmError):
    """Slurm answered with errors; ``errno`` is its first error number (``INVALID_JOB_ID``...),
    None when it gave none."""

    def __init__(self, message, errno=None):
        super().__init__(message)
        self.errno = errno


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class SlurmClient:
    """One cluster's slurmrestd at ``rest_url``; ``user`` and ``token`` authenticate over TCP
    (JWT); ``timeout`` bounds each request, in seconds."""

    def __init__(self, rest_url, user="", token="", timeout=10):
        parts = urlsplit(rest_url.strip())
        if parts.scheme == "unix" and parts.path:
            self.where = parts.path
        elif parts.scheme in ("http", "https") and parts.hostname:
            self.where = parts.netloc.rpartition("@")[2]
        else:
            raise SlurmError("The slurmrestd address must be unix:///path/to/socket, "
                             "http://host:port or https://host:port.")
        self.scheme = parts.scheme
        self.prefix = parts.path.rstrip("/") if parts.scheme != "unix" else ""
        self.headers = {}
        if parts.scheme != "unix":  # rest_auth/local takes the user from the socket's peer
            if user:
                self.headers["X-SLURM-USER-NAME"] = user
            if token:
                self.headers["X-SLURM-USER-TOKEN"] = token
        self.timeout = timeout

    def __repr__(self):
        return f"SlurmClient({self.scheme}://{self.where})"

    # --- the calls ------------------------------------------------------------------------

    def ping(self):
        """Raise SlurmError unless slurmctld answers slurmrestd's ping."""
        answer = self._call("GET", "/ping/")
        pings = self._parsed("GET /ping", lambda: {p.get("hostname") or "?": p["ping"]
                                                   for p in answer["pings"]})
        down = ", ".join(host for host, state in pings.items() if state != "UP")
        if not pings or down:
            raise SlurmError(f"slurmrestd answers, but slurmctld does not ({down or 'no ping'}).")

    def nodes(self) -> list[SlurmNode]:
        """Every node of the cluster."""
        answer = self._call("GET", "/nodes/")
        return self._parsed("GET /nodes", lambda: [parse_node(n) for n in answer["nodes"]])

    def partitions(self) -> list[str]:
        """The names of the cluster's partitions."""
        answer = self._call("GET", "/partitions/")
        return self._parsed("GET /partitions", lambda: [p["name"] for p in answer["partitions"]])

    def submit(self, jobs, script) -> int:
        """Submit a batch job of the components ``jobs`` (job property dicts: one a plain job,
        several a heterogeneous job) running ``script`` (text starting with ``#!``); the job's
        id (the leader's). A component without ``environment`` gets ``DEFAULT_ENVIRONMENT``."""
        if not jobs:
            raise ValueError("a job needs at least one component")
        components = [{**job, "environment": job.get("environment") or DEFAULT_ENVIRONMENT}
                      for job in jobs]
        body = {"script": script}
        if len(components) == 1:
            body["job"] = components[0]
        else:
            body["jobs"] = components
        answer = self._call("POST", "/job/submit", body)
        return self._parsed("POST /job/submit", lambda: int(answer["job_id"]))

    def jobs(self) -> list[SlurmJob]:
        """Every job Slurm knows (each heterogeneous job's components one by one), ended ones
        until slurm.conf's MinJobAge."""
        answer = self._call("GET", "/jobs/")
        return self._parsed("GET /jobs", lambda: [parse_job(j) for j in answer["jobs"]])

    def job(self, job_id) -> list[SlurmJob]:
        """Job ``job_id`` (a heterogeneous job's leader: each of its components) in offset
        order; [] when Slurm does not know it (any more: after slurm.conf's MinJobAge)."""
        try:
            answer = self._call("GET", f"/job/{int(job_id)}")
        except SlurmError as error:
            if _unknown_job(error):
                return []
            raise
        found = self._parsed(f"GET /job/{job_id}", lambda: [parse_job(j) for j in answer["jobs"]])
        return sorted(found, key=lambda job: job.het_offset)

    def cancel(self, job_id):
        """Cancel job ``job_id`` (a leader's id: every component): Slurm ends its processes
        (SIGTERM, KillWait, SIGKILL) and runs the Epilog. A job that already ended, or that
        Slurm no longer knows, counts as cancelled."""
        try:
            self._call("DELETE", f"/job/{int(job_id)}")
        except SlurmError as error:
            if not _unknown_job(error):
                raise

    # --- HTTP -----------------------------------------------------------------------------

    def _parsed(self, what, parse):
        try:
            return parse()
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise SlurmError(f"slurmrestd's answer to {what} was not understood "
                             f"({type(error).__name__}: {error}).") from None

    def _connection(self):
        if self.scheme == "unix":
            return _UnixConnection(self.where, self.timeout)
        kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return kind(self.where, timeout=self.timeout)

    def _call(self, method, path, body=None):
        """Slurm's JSON answer to ``method`` on ``API + path``; SlurmError on any failure."""
        headers = {"Accept": "application/json", **self.headers}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        log.debug("slurmrestd %s: %s %s", self, method, path)
        connection = self._connection()
        try:
            connection.request(method, self.prefix + API + path, body=data, headers=headers)
            response = connection.getresponse()
            status, text = response.status, response.read()
        except (OSError, http.client.HTTPException) as error:
            raise SlurmError(f"slurmrestd at {self.where} is not answering: "
                             f"{_describe(error)}.") from None
        finally:
            connection.close()
        return check_answer(status, text, f"{method} {path.rstrip('/')}")


# --- parsing Slurm's answers (pure functions, on slurmrestd's JSON) -----------------------


def check_answer(status, text, what="the request"):
    """The JSON object of an answer with HTTP ``status`` and body ``text`` (bytes or str);
    SlurmError when it is an error (``SlurmRefused`` when Slurm said why)."""
    try:
        answer = json.loads(text) if text else None
    except ValueError:
        answer = None
    if status == 401 or status == 403:
        raise SlurmError(f"slurmrestd refused the credentials (HTTP {status}): check the "
                         "Slurm user and token, or that Hourglass runs as slurmrestd's user.")
    errors = answer.get("errors") if isinstance(answer, dict) else None
    if errors:
        raise SlurmRefused(f"Slurm refused {what}: {errors_text(errors)}.", _errno(errors))
    if status >= 400 or not isinstance(answer, dict):
        detail = " with no JSON" if not isinstance(answer, dict) else ""
        raise SlurmError(f"slurmrestd answered {what} with HTTP {status}{detail}.")
    return answer


def errors_text(errors):
    """Slurm's ``errors`` list in one line, whatever shape each entry has."""
    texts = []
    for entry in errors:
        if not isinstance(entry, dict):
            texts.append(str(entry))
            continue
        error, description = entry.get("error") or "", entry.get("description") or ""
        if error and description and description != error:
            texts.append(f"{error} ({description})")
        else:
            texts.append(error or description or "unknown error")
    return "; ".join(texts)


def _unknown_job(error):
    return isinstance(error, SlurmRefused) and error.errno == INVALID_JOB_ID


def _errno(errors):
    for entry in errors:
        if isinstance(entry, dict):
            for key in ("error_number", "error_code", "errno"):
                if isinstance(entry.get(key), int):
                    return entry[key]
    return None


def parse_node(node) -> SlurmNode:
    """A ``SlurmNode`` of one entry of ``GET /nodes``."""
    return SlurmNode(
        name=node["name"], address=node.get("address") or "",
        hostname=node.get("hostname") or "", state=(node.get("state") or "unknown").lower(),
        flags=[flag.upper() for flag in node.get("state_flags") or []],
        cpus=int(node.get("cpus") or 0), memory_mib=int(node.get("real_memory") or 0),
        gres=parse_gres(node.get("gres") or ""), partitions=list(node.get("partitions") or []),
        reason=node.get("reason") or "")


def parse_job(job) -> SlurmJob:
    """A ``SlurmJob`` of one entry of ``GET /job/{id}``."""
    nodes = expand_hostlist(job.get("nodes") or "")
    details = job.get("gres_detail") or []
    return SlurmJob(
        id=int(job["job_id"]), het_job_id=int(job.get("het_job_id") or 0) or None,
        het_offset=int(job.get("het_job_offset") or 0), state=job["job_state"],
        reason="" if job.get("state_reason") in (None, "None") else job["state_reason"],
        partition=job.get("partition") or "", nodes=nodes,
        gres_detail={node: parse_gres_detail(detail)
                     for node, detail in zip(nodes, details, strict=False)},
        start=job.get("start_time") or None, end=job.get("end_time") or None,
        exit_code=exit_status(int(job.get("exit_code") or 0)), name=job.get("name") or "")


def exit_status(raw):
    """A wait() status as Slurm reports it -> the exit code, or 128 + the killing signal."""
    return 128 + (raw & 0x7F) if raw & 0x7F else raw >> 8


def _items(text, brackets="()"):
    """``gpu:a100:1(IDX:0),tpu:bm1684x:2(IDX:0,2)`` -> its items, split on the commas
    outside ``brackets``."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {brackets[0]: 1, brackets[1]: -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]


def _gres_item(item):
    """``tpu:bm1684x:2(IDX:0-1)`` -> ("tpu", "bm1684x", 2, "IDX:0-1"); the count is 1 when
    not given, the type "" when untyped (``tpu:2``)."""
    head, _, inside = item.partition("(")
    parts = head.split(":")
    count = int(parts.pop()) if len(parts) > 1 and parts[-1].isdigit() else 1
    return parts[0], parts[1] if len(parts) > 1 else "", count, inside.rstrip(")")


def parse_gres(text) -> dict[tuple[str, str], int]:
    """A node's ``gres`` (``tpu:bm1684x:3``, ``gpu:a100:2(S:0-1),tpu:3``) -> {(name, type):
    count}; {} for none (``""``, ``(null)``)."""
    found = {}
    for item in _items(text):
        if item in ("(null)", "N/A"):
            continue
        name, kind, count, _ = _gres_item(item)
        found[name, kind] = found.get((name, kind), 0) + count
    return found


def parse_gres_detail(text) -> dict[tuple[str, str], list[int]]:
    """One node's ``gres_detail`` entry (``tpu:bm1684x:3(IDX:0,2-3)``) -> {(name, type):
    [indices]}; a GRES without indices (``CNT:2``, ``IDX:N/A``) is left out."""
    found = {}
    for item in _items(text):
        name, kind, _, inside = _gres_item(item)
        if inside.startswith("IDX:") and inside != "IDX:N/A":
            found.setdefault((name, kind), []).extend(parse_ranges(inside[4:]))
    return found


def parse_ranges(text) -> list[int]:
    """``0,2-3`` -> [0, 2, 3] (Slurm's bitmap and hostlist ranges)."""
    numbers = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        numbers.extend(range(int(first), int(last or first) + 1))
    return numbers


HOSTLIST_RANGE = re.compile(r"\[([^\]]*)\]")


def expand_hostlist(text) -> list[str]:
    """A Slurm hostlist (``node[1-2,05],gpu7``) -> its names in order (``node1``, ``node2``,
    ``node05``, ``gpu7``): a range keeps its zero padding."""
    names = []
    for item in _items(text, "[]"):
        match = HOSTLIST_RANGE.search(item)
        if match is None:
            names.append(item)
            continue
        head, tail = item[:match.start()], item[match.end():]
        for part in match[1].split(","):
            first, _, last = part.partition("-")
            width = len(first) if first.startswith("0") else 0
            for number in range(int(first), int(last or first) + 1):
                names.extend(expand_hostlist(f"{head}{number:0{width}d}{tail}"))
    return names


def _describe(error):
    """A socket error in words: ``Connection refused``, ``No such file or directory``,
    ``timed out``."""
    if isinstance(error, TimeoutError):
        return "no answer in time"
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def client_for(cluster, timeout=10) -> SlurmClient:
    """The client of SlurmCluster row ``cluster``'s slurmrestd."""
    return SlurmClient(cluster.rest_url, user=cluster.user, token=cluster.token, timeout=timeout)
