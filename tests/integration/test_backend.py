"""The container backend seam on real Podman: replicas' containers with fake chips (real
``mknod`` nodes), their limits and privileges seen from inside, times, stops, events,
logs, adoption by label, and per-task networks with DNS names.

Other test sessions may share this host's Podman, so replica ids here are random and
large, and assertions about "ours" look only at this module's containers.
"""

import itertools
import os
import random
import re
import stat
import threading
import time

import pytest

from scheduler.accelerators import Chip, discover_all
from scheduler.backend import (
    BackendError,
    ContainerExists,
    ContainerGone,
    ContainerSpec,
    StartFailed,
    Timestamp,
    attach_chips,
    container_name,
)
from scheduler.images import APPLETS, import_busybox
from scheduler.podman import PodmanBackend
from tests.conftest import TEST_LABEL
from tests.fake_hosts import make_sophgo_host
from tests.support import wait_for

pytestmark = pytest.mark.podman

IMAGE = "localhost/hourglass-test-backend:v1"
EXTRA_APPLETS = ("grep", "nc", "nslookup", "stat", "touch", "head")
IDS = itertools.count(random.randrange(10**8, 9 * 10**8))
INSTANCE = f"{random.randrange(16**8):08x}"  # this run's own, as a database's would be
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def image(podman_service):
    """Busybox with the applets these tests run inside (device numbers, sockets, DNS)."""
    backend = PodmanBackend(podman_service.url)
    if not backend.image_exists(IMAGE):
        import_busybox(backend, IMAGE, applets=APPLETS + EXTRA_APPLETS)
    return IMAGE


@pytest.fixture
def backend(podman_service):
    return PodmanBackend(podman_service.url)


@pytest.fixture
def make_spec(backend, image):
    """Specs for fresh replica ids, labelled for the session's clean-up; removed afterwards."""
    names = []

    def make(argv, **fields):
        fields = {"task": 1, "subtask": 2, "user": 3, "cpu_millis": 500, "memory_mib": 64,
                  "labels": {TEST_LABEL: "1"}, "image": image, **fields}
        spec = ContainerSpec(instance=INSTANCE, replica=next(IDS), argv=tuple(argv), **fields)
        names.append(spec.name)
        return spec

    yield make
    for name in names:
        backend.remove(name)


@pytest.fixture
def fake_host(tmp_path):
    """Two SC7 cards (host chips 0..5); chips 4 and 5 are /dev/zero and /dev/full (1:5, 1:7),
    so a container can tell which host chip it got."""
    root = tmp_path / "host"
    make_sophgo_host(root, cards=[("0x1686", 3)] * 2)
    for index, minor in ((4, 5), (5, 7)):
        node = root / f"dev/bm-sophon{index}"
        node.unlink()
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    return root


def wait_exited(backend, handle, timeout=15):
    return wait_for(lambda: (s := backend.inspect(handle)) and s.status == "exited" and s,
                    timeout=timeout, what=f"{handle} to exit")


def cgroup_limits(backend, handle):
    """{file: text} of the CPU, memory and pids limit files readable inside (cgroup v1 or v2)."""
    files = ["/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max",
             "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us",
             "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/pids/pids.max"]
    script = 'for f in "$@"; do [ -r "$f" ] && echo "$f=$(cat "$f")"; done; true'
    out = backend.exec(handle, ["sh", "-c", script, "sh", *files]).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


# --- pure parts of the seam ------------------------------------------------------------


def test_timestamps_keep_nanoseconds_and_say_none_for_never():
    stamp = Timestamp.parse("2026-11-25T17:50:21.534239569Z")
    assert stamp.ns == 1795629021534239569
    assert stamp.at.isoformat() == "2026-11-25T17:50:21.534239"
    assert Timestamp.parse("2026-11-25T19:50:21.5+02:00").ns == 1795629021500000000
    assert Timestamp.parse("0001-01-01T00:00:00Z") is None
    assert Timestamp.from_ns(stamp.ns).raw == "2026-11-25T17:50:21.534239569Z"
    with pytest.raises(ValueError):
        Timestamp.parse("yesterday")


def test_chips_are_numbered_from_zero_and_the_spec_env_wins(fake_host, image):
    chips = discover_all(fake_host)["sophgo.com/bm1684x"]
    spec = ContainerSpec(instance="a1b2c3d4", replica=7, task=1, subtask=2, user=3, image=image,
                         argv=("true",), cpu_millis=1000, memory_mib=64,
                         env={"HOURGLASS_CHIPS": "mine"})
    attached = attach_chips(spec, [chips[5], chips[4]], fake_host)
    assert attached.devices == (f"{fake_host}/dev/bm-sophon5:/dev/bm-sophon0:rwm",
                                f"{fake_host}/dev/bm-sophon4:/dev/bm-sophon1:rwm",
                                f"{fake_host}/dev/bmdev-ctl:/dev/bmdev-ctl:rwm")
    assert attached.mounts == ((f"{fake_host}/opt/sophon", "/opt/sophon", True),)
    assert attached.env == {"HOURGLASS_CHIPS": "mine"}
    assert attached.name == container_name("a1b2c3d4", 7) == "hourglass-a1b2c3d4-r7"
    assert attached.all_labels == {"hourglass.instance": "a1b2c3d4", "hourglass.replica": "7",
                                   "hourglass.task": "1", "hourglass.subtask": "2",
                                   "hourglass.user": "3"}
    with pytest.raises(KeyError):
        attach_chips(spec, [Chip("acme.com/npu", 0, "/dev/npu0")], fake_host)
    with pytest.raises(ValueError):
        ContainerSpec(instance="a1b2c3d4", replica=7, task=1, subtask=2, user=3, image=image,
                      argv=(), cpu_millis=1000, memory_mib=64)


# --- a replica's container, seen from inside --------------------------------------------


def test_a_replica_sees_exactly_its_chips_its_limits_and_its_env(backend, make_spec, fake_host):
    chips = {chip.index: chip for chip in discover_all(fake_host)["sophgo.com/bm1684x"]}
    spec = attach_chips(
        make_spec(["sleep", "60"], cpu_millis=500, memory_mib=96, pids_limit=64, shm_mib=32,
                  env={"HOURGLASS_TASK_ID": "1", "GREETING": "hello world"},
                  working_dir="/opt/sophon"),
        [chips[4], chips[5]], fake_host)
    handle = backend.start(spec)
    assert handle == spec.name

    devices = backend.exec(handle, ["ls", "/dev"]).stdout.split()
    assert sorted(d for d in devices if d.startswith("bm")) == [
        "bm-sophon0", "bm-sophon1", "bmdev-ctl"]
    numbers = backend.exec(handle, ["stat", "-c", "%n %t:%T", "/dev/bm-sophon0",
                                    "/dev/bm-sophon1", "/dev/bmdev-ctl"]).stdout
    assert numbers.split("\n")[:3] == [
        "/dev/bm-sophon0 1:5", "/dev/bm-sophon1 1:7", "/dev/bmdev-ctl 1:3"]
    # The device cgroup lets it use them: host chip 5 is /dev/full, so a write says "no space".
    write = backend.exec(handle, ["sh", "-c", "echo x > /dev/bm-sophon1"])
    assert write.exit_code != 0 and "No space left on device" in write.stderr

    limits = cgroup_limits(backend, handle)
    if "/sys/fs/cgroup/cpu.max" in limits:  # cgroup v2
        assert limits["/sys/fs/cgroup/cpu.max"] == "50000 100000"
        assert limits["/sys/fs/cgroup/memory.max"] == str(96 * MIB)
        assert limits["/sys/fs/cgroup/pids.max"] == "64"
    else:  # cgroup v1 (this host's hybrid layout)
        assert limits["/sys/fs/cgroup/cpu/cpu.cfs_quota_us"] == "50000"
        assert limits["/sys/fs/cgroup/cpu/cpu.cfs_period_us"] == "100000"
        assert limits["/sys/fs/cgroup/memory/memory.limit_in_bytes"] == str(96 * MIB)
        assert limits["/sys/fs/cgroup/pids/pids.max"] == "64"

    status = backend.exec(handle, ["cat", "/proc/self/status"]).stdout
    assert re.search(r"^CapEff:\s+0+$", status, re.M), status
    assert re.search(r"^CapBnd:\s+0+$", status, re.M), status
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status

    env = dict(line.split("=", 1) for line in backend.exec(handle, ["env"]).stdout.splitlines())
    assert env["HOURGLASS_TASK_ID"] == "1" and env["GREETING"] == "hello world"
    assert env["HOURGLASS_CHIPS"] == "0,1"
    assert backend.exec(handle, ["sh", "-c", "pwd"]).stdout == "/opt/sophon\n"

    assert backend.exec(handle, ["ls", "/opt/sophon"]).stdout.split() == ["libsophon-current"]
    touch = backend.exec(handle, ["touch", "/opt/sophon/x"])
    assert touch.exit_code != 0 and "Read-only file system" in touch.stderr
    assert not (fake_host / "opt/sophon/x").exists()
    mounts = backend.exec(handle, ["cat", "/proc/mounts"]).stdout
    assert re.search(r" /dev/shm \S+ \S*size=32768k", mounts), mounts

    state = backend.inspect(handle)
    assert state.status == "running" and state.exit_code is None and state.finished is None
    assert state.replica == spec.replica and state.labels[TEST_LABEL] == "1"


def test_exit_code_and_podmans_own_times_to_the_nanosecond(backend, make_spec):
    before = time.time_ns()
    handle = backend.start(make_spec(["sh", "-c", "sleep 1; exit 3"]))
    state = wait_exited(backend, handle)
    assert state.exit_code == 3 and state.status == "exited"
    for stamp in (state.started, state.finished):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)",
                            stamp.raw)
        assert Timestamp.parse(stamp.raw) == stamp
        assert before < stamp.ns < time.time_ns()
        assert stamp.at == Timestamp.from_ns(stamp.ns).at
    # Podman stamps StartedAt once the runtime says "started", a little after the program
    # began: under load the measured run is somewhat shorter than the program's 1 s.
    assert 0.5 <= (state.finished.ns - state.started.ns) / 1e9 < 5
    assert state.started.ns % 1000 or state.finished.ns % 1000  # finer than microseconds


def test_argv_with_shell_metacharacters_runs_literally(backend, make_spec):
    argv = ["echo", "$(id)", ";", "&&", "`id`", "|", "$HOME", "*", "'quoted'"]
    handle = backend.start(make_spec(argv))
    wait_exited(backend, handle)
    assert "".join(backend.logs(handle)) == "$(id) ; && `id` | $HOME * 'quoted'\n"


def test_a_single_word_argv_replaces_the_image_command(backend, make_spec):
    handle = backend.start(make_spec(["id", "-u"]))
    assert wait_exited(backend, handle).exit_code == 0
    assert "".join(backend.logs(handle)) == "0\n"


# --- stop, remove, start twice ----------------------------------------------------------


def test_stop_sends_term_then_kill_after_the_grace(backend, make_spec):
    traps = backend.start(make_spec(
        ["sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo ready; sleep 60 & wait"]))
    ignores = backend.start(make_spec(["sh", "-c", "trap '' TERM; echo ready; sleep 60"]))
    plain = backend.start(make_spec(["sleep", "60"]))
    for handle in (traps, ignores):
        wait_for(lambda h=handle: "ready" in "".join(backend.logs(h)), what=f"{handle} ready")

    started = time.monotonic()
    backend.stop(traps, grace=10)
    assert time.monotonic() - started < 3
    assert backend.inspect(traps).exit_code == 0
    assert "".join(backend.logs(traps)) == "ready\ngot TERM\n"

    started = time.monotonic()
    backend.stop(plain, grace=10)  # no handler: init passes TERM on, and sleep dies of it
    assert time.monotonic() - started < 3
    assert backend.inspect(plain).exit_code == 143

    started = time.monotonic()
    backend.stop(ignores, grace=2)
    assert 2 <= time.monotonic() - started < 6
    assert backend.inspect(ignores).exit_code == 137

    backend.stop(ignores, grace=2)  # already stopped: nothing to do
    backend.remove(ignores)
    backend.stop(ignores, grace=2)  # gone: nothing to do either


def test_removing_twice_is_fine_and_a_gone_container_says_so(backend, make_spec):
    handle = backend.start(make_spec(["sh", "-c", "trap '' TERM; echo ready; sleep 60"]))
    wait_for(lambda: "ready" in "".join(backend.logs(handle)), what="TERM ignored")
    started = time.monotonic()
    backend.remove(handle)  # kills it at once, with no grace
    assert time.monotonic() - started < 2
    backend.remove(handle)
    assert backend.inspect(handle) is None
    with pytest.raises(ContainerGone):
        backend.exec(handle, ["true"])
    with pytest.raises(ContainerGone):
        backend.logs(handle)


def test_a_replica_is_never_started_twice_and_failed_starts_leave_nothing(
        backend, make_spec):
    spec = make_spec(["sleep", "60"])
    backend.start(spec)
    with pytest.raises(ContainerExists):
        backend.start(spec)
    assert backend.inspect(spec.name).status == "running"

    missing = make_spec(["true"], image="localhost/hourglass-no-such-image:latest")
    with pytest.raises(StartFailed):
        backend.start(missing)
    assert backend.inspect(missing.name) is None

    unmountable = make_spec(["true"], mounts=(("/no/such/folder", "/code", True),))
    with pytest.raises(StartFailed, match="/no/such/folder"):
        backend.start(unmountable)
    assert backend.inspect(unmountable.name) is None

    # A missing program is init's to report: the container starts, fails, and says why.
    bad = make_spec(["/no/such/program"])
    backend.start(bad)
    assert wait_exited(backend, bad.name).exit_code != 0
    assert "No such file or directory" in "".join(backend.logs(bad.name))


def test_exec_returns_output_and_exit_code_and_refuses_a_stopped_container(
        backend, make_spec):
    handle = backend.start(make_spec(["sleep", "60"]))
    result = backend.exec(handle, ["sh", "-c", "echo out; echo err >&2; exit 5"])
    assert (result.exit_code, result.stdout, result.stderr) == (5, "out\n", "err\n")
    assert backend.exec(handle, ["echo", "$(id)", ";"]).stdout == "$(id) ;\n"
    backend.stop(handle, grace=1)
    with pytest.raises(BackendError) as refused:
        backend.exec(handle, ["true"])
    assert not isinstance(refused.value, ContainerGone)


# --- adoption, events, logs -------------------------------------------------------------


def test_list_ours_finds_replicas_by_label_and_not_a_foreign_container(
        backend, make_spec, image):
    running = backend.start(make_spec(["sleep", "60"], task=41))
    exited = backend.start(make_spec(["sh", "-c", "exit 2"], task=41))
    wait_exited(backend, exited)
    foreign = f"hourglass-test-foreign-{next(IDS)}"
    other_install = f"hourglass-test-other-{next(IDS)}"
    with backend.client() as client:
        client.containers.create(image, ["sleep", "60"], name=foreign,
                                 labels={TEST_LABEL: "1", "hourglass.task": "41"}).start()
        client.containers.create(image, ["sleep", "60"], name=other_install, labels={
            TEST_LABEL: "1", "hourglass.instance": "0ther000", "hourglass.replica": "1"})
    try:
        ours = {state.handle: state for state in backend.list_ours(INSTANCE)}
    finally:
        backend.remove(foreign)
        backend.remove(other_install)
    assert foreign not in ours and other_install not in ours
    assert ours[running].status == "running" and ours[running].labels["hourglass.task"] == "41"
    assert ours[exited].status == "exited" and ours[exited].exit_code == 2
    assert ours[exited].finished is None  # one list call: no times (inspect has them)
    assert ours[running].replica == int(running.removeprefix(f"hourglass-{INSTANCE}-r"))
    assert [s.handle for s in backend.list_ours(INSTANCE, running_only=True)
            if s.labels.get("hourglass.task") == "41"] == [running]


def test_events_yield_our_containers_lifecycle_live_and_replayed(backend, make_spec, image):
    since = time.time_ns()
    spec = make_spec(["sh", "-c", "sleep 0.5; exit 4"])
    foreign = f"hourglass-test-foreign-{next(IDS)}"
    live = []

    def watch():
        for event in backend.events(since_ns=since, idle=20):
            live.append(event)
            if event.handle == spec.name and event.kind == "removed":
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with backend.client() as client:
        client.containers.create(image, ["true"], name=foreign, labels={TEST_LABEL: "1"})
    backend.remove(foreign)
    backend.start(spec)
    wait_exited(backend, spec.name)
    backend.remove(spec.name)
    watcher.join(20)
    assert not watcher.is_alive(), "no 'removed' event came"

    mine = [e for e in live if e.handle == spec.name]
    assert [e.kind for e in mine] == ["created", "started", "died", "removed"]
    assert [e.exit_code for e in mine] == [None, None, 4, None]
    assert all(since < e.at.ns < time.time_ns() for e in mine)
    assert all(e.replica == spec.replica and e.labels[TEST_LABEL] == "1" for e in mine)
    assert foreign not in {e.handle for e in live}

    replayed = []
    for event in backend.events(since_ns=mine[0].at.ns - 1, idle=20):
        if event.handle == spec.name:
            replayed.append(event)
            if event.kind == "removed":
                break
    assert replayed == mine


def test_logs_return_the_output_and_follow_a_running_container(backend, make_spec):
    handle = backend.start(make_spec(
        ["sh", "-c", "echo one; sleep 1; echo two; echo oops >&2; sleep 1; echo three"]))
    chunks = []
    for chunk in backend.logs(handle, follow=True):
        chunks.append((chunk, backend.inspect(handle).status))
    text = "".join(chunk for chunk, _ in chunks)
    # stdout and stderr are separate pipes: their lines may interleave either way
    assert sorted(text.splitlines()) == ["one", "oops", "three", "two"]
    assert text.startswith("one\n") and text.endswith("three\n")
    assert chunks[0] == ("one\n", "running")  # came while it ran, not after
    assert backend.inspect(handle).status == "exited"  # the stream ended with the container
    assert "".join(backend.logs(handle)) == text
    assert "".join(backend.logs(handle, tail=1)) == "three\n"


# --- per-task networks ------------------------------------------------------------------


def test_replicas_on_one_task_network_reach_each_other_by_name_and_no_one_else(backend, make_spec):
    task, other = next(IDS), next(IDS)
    network, other_network = f"hourglass-t{task}", f"hourglass-t{other}"
    labels = {TEST_LABEL: "1", "hourglass.task": str(task)}
    assert backend.ensure_network(network, labels) is True  # names resolve here
    try:
        backend.ensure_network(other_network, {TEST_LABEL: "1", "hourglass.task": str(other)})
        assert backend.ensure_network(network, labels) is True  # again: the same network
        server = make_spec(["sh", "-c", "echo hello-from-worker | nc -l -p 7000"],
                           task=task, network=network, aliases=("worker-1",))
        client = make_spec(["sleep", "60"], task=task, network=network, aliases=("master-0",))
        outsider = make_spec(["sleep", "60"], task=other, network=other_network)
        for spec in (server, client, outsider):
            backend.start(spec)
        server_ip = backend.inspect(server.name).addresses[network]
        # Another task's replica neither resolves these names nor reaches them by address.
        assert backend.exec(outsider.name, ["nslookup", "worker-1"]).exit_code != 0
        reach = backend.exec(outsider.name, ["nc", "-w", "2", server_ip, "7000"])
        assert reach.exit_code != 0 and reach.stdout == "", reach

        found = backend.exec(client.name, ["nslookup", server.name]).stdout
        assert server_ip in found, found
        back = backend.exec(server.name, ["nslookup", "master-0"])
        assert backend.inspect(client.name).addresses[network] in back.stdout
        connect = ("for i in 1 2 3 4 5 6 7 8 9 10; do nc worker-1 7000 && exit 0; "
                   "sleep 0.3; done; exit 1")
        assert backend.exec(client.name, ["sh", "-c", connect]).stdout == "hello-from-worker\n"

        with pytest.raises(BackendError):
            backend.remove_network(network)  # containers are still on it
        for spec in (server, client, outsider):
            backend.remove(spec.name)
    finally:
        backend.remove_network(network)
        backend.remove_network(other_network)
    backend.remove_network(network)  # gone already: fine
