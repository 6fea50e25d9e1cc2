"""Load, with a peer's tool: 30 seconds of ``bench/locustfile.py`` (50 renters, 2 miners)
against a real ``flask --app app serve`` on real Podman, as ``make bench-load`` runs it
for 5 minutes. Locust runs in a process of its own (it monkey-patches with gevent)."""

import pytest

from bench import load
from tests.support import wait_for

pytestmark = pytest.mark.podman


def test_fifty_renters_and_two_miners_for_thirty_seconds(live_server_factory, test_image,
                                                         tmp_path):
    server = live_server_factory(**load.SERVER_ENV)
    server.flask("db", "upgrade")
    config = tmp_path / "accounts.json"
    load.seed(server.env, config, renters=50, miners=2)
    instance = server.env["HOURGLASS_INSTANCE"]
    try:
        server.start()
        load.prepare(server.url, config, image=test_image)
        status = load.run_locust(server.url, config, "30s", tmp_path)
        rows = load.stats(tmp_path)
        report = f"{load.table(rows)}\n{(tmp_path / 'locust.log').read_text()[-3000:]}"
        assert load.failures(tmp_path) == [], report
        assert status == 0, report
        count = {row["Name"]: int(row["Request Count"]) for row in rows}.get
        assert count("Aggregated", 0) > 500, report
        # Tasks went in both ways, and some ended and were deleted within the 30 seconds.
        assert count("/api/v1/tasks (POST)", 0) and count("/renter/tasks (POST)", 0), report
        assert count("/api/v1/tasks/[id] (DELETE)", 0) + \
            count("/renter/tasks/[id]/delete (POST)", 0), report

        states = load.settle(server.url, config)
        assert set(states) <= {"succeeded", "stopped"}, states
        wait_for(lambda: not load.containers_left(instance), timeout=60, interval=1,
                 what="the deleted tasks' containers to be removed")
    finally:
        server.stop()
        load.remove_leftovers(instance)
    clean, said = load.verify(server.env)
    assert clean, said
