"""Following nodes' container events: a replica's end is seen at once, not a tick later.

The watcher on its own against a real Podman (only our instance's ends count),
then a live server whose periodic tick is a minute long: a replica that exits
after a second is ``succeeded`` within seconds, which only the events stream
can do.
"""

import queue
import random

import pytest

from scheduler.podman import PodmanBackend
from scheduler.watch import EventWatcher
from tests.conftest import TEST_LABEL
from tests.integration.test_scheduler_restart import Api
from tests.support import wait_for

pytestmark = pytest.mark.podman


def run(backend, image, name, labels, argv):
    with backend.client() as client:
        client.containers.create(image, argv, name=name, labels={TEST_LABEL: "1", **labels}
                                 ).start()


def test_the_watcher_reports_our_instances_ends_only_and_stops(podman_service, test_image):
    backend = PodmanBackend(podman_service.url)
    seen = queue.Queue()
    watcher = EventWatcher(PodmanBackend, seen.put, idle=1.0)
    ours, theirs = (f"{random.randrange(16**8):08x}" for _ in range(2))
    suffix = random.randrange(10**9)
    names = [f"hourglass-test-watch-{suffix}-{n}" for n in ("ours", "theirs", "after")]
    watcher.sync([podman_service.url], ours)
    try:
        wait_for(lambda: watcher.urls == {podman_service.url}, timeout=5, what="a watcher")
        # the stream may take a moment to open: an exit from before it opened is not seen
        run(backend, test_image, names[1], {"hourglass.instance": theirs,
                                            "hourglass.replica": "1"}, ["sleep", "0"])
        run(backend, test_image, names[0], {"hourglass.instance": ours,
                                            "hourglass.replica": "1"}, ["sleep", "2"])
        event = seen.get(timeout=15)
        assert (event.handle, event.kind, event.exit_code) == (names[0], "died", 0)
        backend.remove(names[0])
        assert seen.get(timeout=15).kind == "removed"
        assert seen.empty()  # nothing of the other instance, nothing of the start

        watcher.stop()
        assert watcher.urls == set()
        run(backend, test_image, names[2], {"hourglass.instance": ours,
                                            "hourglass.replica": "2"}, ["sleep", "0"])
        with pytest.raises(queue.Empty):
            seen.get(timeout=3)  # its thread ended within its idle second
    finally:
        watcher.stop()
        for name in names:
            backend.remove(name)


def test_a_replica_that_exits_is_seen_ended_long_before_the_next_tick(
        live_server_factory, podman_service, test_image):
    server = live_server_factory(accounts=True, HOURGLASS_TICK_SECONDS="60",
                                 HOURGLASS_DISCOVERY_SECONDS="1")
    miner = Api(server, server.flask("token", "create", "mina").stdout.strip())
    renter = Api(server, server.flask("token", "create", "rene").stdout.strip())
    server.start()
    wait_for(lambda: any(n["ready"] for n in miner("GET", "/nodes")), timeout=30,
             interval=0.2, what="the local node to be Ready")
    miner("POST", "/specs", 201, json={"name": "small", "cpu": "1", "memory_gb": "0.125",
                                       "price": "1", "resources": {}})
    task = renter("POST", "/tasks", 201, json={
        "name": "short", "image": test_image, "argv": ["sleep", "1"], "pool": "default",
        "subtasks": [{"role": "main", "spec": "small", "replicas": 1}]})["id"]
    # The submission wakes the pass that starts it; only the died event can end it this soon.
    ended = wait_for(lambda: (t := renter("GET", f"/tasks/{task}"))["state"] == "succeeded" and t,
                     timeout=15, interval=0.2, what="the task to succeed without a tick")
    replica = ended["replicas"][0]
    PodmanBackend(podman_service.url).remove(server.container(replica["id"]))  # leave nothing
    assert replica["exit_code"] == 0 and replica["finished_ns"] > replica["started_ns"]
