"""The maximum run time (``portal.run_limits``, ``scheduler.run_limits``): the renter's
choice, capped by the pool; refused above the cap; the scheduler's step asking overdue tasks
to stop with the reason; the countdown on the task page; the miner's cap on the Pools page.

Replica start times the scheduler would write (Podman's StartedAt) are set directly; the
rules, forms, API and database are the real ones.
"""

import re
import time

import pytest

from portal import run_limits
from portal.models import Replica, Task, User
from portal.notebooks import active_run, create_notebook
from portal.pools import default_pool, pool_limits, set_pool_limits
from portal.reasons import RUN_TIME_REACHED
from portal.task_input import TaskError
from scheduler.run_limits import stop_overdue
from tests.conftest import PASSWORD
from tests.support import csrf_token, login
from tests.unit.test_tasks import FORM, IMAGE, ctx, submit, world  # noqa: F401 (fixtures)

MINUTE_NS = 60 * 10**9


def started(task, ago_ns, state="running"):
    """What the scheduler writes once the task's containers run: started ``ago_ns`` ago."""
    Replica.update(state=state, started_ns=time.time_ns() - ago_ns).where(
        Replica.task == task).execute()


@pytest.mark.parametrize("own, cap, expected", [
    (None, None, None), (30, None, 30), (None, 60, 60), (30, 60, 30), (90, 60, 60)])
def test_the_effective_limit_is_the_lower_of_task_and_pool(own, cap, expected):
    assert run_limits.effective_minutes(own, cap) == expected


def test_a_choice_above_the_pools_cap_is_refused(ctx):  # noqa: F811 (the fixture)
    assert submit(max_run_minutes="45").max_run_minutes == 45
    assert submit(max_run_minutes="").max_run_minutes is None
    set_pool_limits(default_pool(), max_run_minutes="60")
    assert pool_limits(default_pool()).max_run_minutes == 60
    assert submit(max_run_minutes=60).max_run_minutes == 60
    for value, message in ((61, "Pool 'default' allows at most 60 minutes"),
                           ("0", "whole minutes from 1"), ("1.5", "whole minutes from 1"),
                           (525601, "whole minutes from 1")):
        with pytest.raises(TaskError) as info:
            submit(max_run_minutes=value)
        assert message in info.value.errors["max_run_minutes"]
    with pytest.raises(TaskError) as info:  # reported with the other bad fields
        submit(image="", max_run_minutes=99)
    assert set(info.value.errors) == {"image", "max_run_minutes"}


def test_the_scheduler_stops_a_task_past_its_limit(ctx):  # noqa: F811 (the fixture)
    short = submit(max_run_minutes=2)
    capped = submit()
    free = submit()
    started(short, 3 * MINUTE_NS)
    started(capped, 3 * MINUTE_NS)
    started(free, 3 * MINUTE_NS)
    assert stop_overdue() == [short.id]  # no cap on the pool yet: ``capped`` runs on
    set_pool_limits(default_pool(), max_run_minutes=5)
    assert stop_overdue() == []
    assert stop_overdue(time.time_ns() + 3 * MINUTE_NS) == [capped.id, free.id]
    stopped = Task.get_by_id(short.id)
    assert (stopped.stop_requested, stopped.stop_reason) == (True, RUN_TIME_REACHED)


def test_the_deadline_counts_from_the_earliest_started_replica(ctx):  # noqa: F811 (the fixture)
    task = submit(max_run_minutes=10, subtasks=[("worker", "1 TPU", 2)])
    first, second = Replica.select().where(Replica.task == task).order_by(Replica.id)
    now = time.time_ns()
    Replica.update(state="succeeded", started_ns=now - 11 * MINUTE_NS).where(
        Replica.id == first.id).execute()
    Replica.update(state="running", started_ns=now - MINUTE_NS).where(
        Replica.id == second.id).execute()
    assert stop_overdue(now) == [task.id]


def test_a_pending_task_has_no_countdown_and_is_not_stopped(ctx):  # noqa: F811 (the fixture)
    task = submit(max_run_minutes=1)
    assert run_limits.run_limit(task) is None and stop_overdue() == []
    started(task, 30 * 10**9)
    limit = run_limits.run_limit(Task.get_by_id(task.id))
    assert limit.minutes == 1 and 25 <= limit.seconds_left <= 30 and limit.minutes_left == 1


# --- pages -------------------------------------------------------------------------------


@pytest.fixture
def rene(client, world):  # noqa: F811
    login(client, "renter", "rene", PASSWORD)
    return client


def post(client, path, **data):
    return client.post(path, data={"csrf_token": csrf_token(client, "/renter/tasks/new"),
                                   **data})


def test_the_task_page_counts_down_and_says_why_it_stopped(rene, app):
    with app.app_context():
        set_pool_limits(default_pool(), max_run_minutes=120)
    refused = post(rene, "/renter/tasks", **FORM, max_run_minutes="121")
    assert refused.status_code == 400
    assert "Pool &#39;default&#39; allows at most 120 minutes" in refused.get_data(as_text=True)
    made = post(rene, "/renter/tasks", **FORM, max_run_minutes="90")
    assert made.status_code == 303
    with app.app_context():
        task = Task.get()
        started(task, 7 * MINUTE_NS)
    page = rene.get(made.headers["Location"]).get_data(as_text=True)
    assert re.search(r'data-seconds-left="(49[2-9]\d|5\d\d\d)"', page), page
    assert "Stops in <span class=\"run-countdown-left\">1 h 23 min</span>" in page
    assert "js/run-countdown.js" in page and "1 h 30 min" in page
    with app.app_context():
        assert stop_overdue(time.time_ns() + 90 * MINUTE_NS) == [task.id]
    page = rene.get(made.headers["Location"]).get_data(as_text=True)
    assert "stopped: its maximum run time was reached" in page
    assert "data-seconds-left" not in page


def test_the_miner_sets_the_cap_on_the_pools_page(client, app, accounts):
    login(client, "miner", "mina", PASSWORD)
    token = csrf_token(client, "/miner/pools")
    fields = {"csrf_token": token, "max_chips_per_user": "", "max_replicas_per_user": "",
              "cull_idle_minutes": ""}
    refused = client.post("/miner/pools/1/limits", data={**fields, "max_run_minutes": "0"})
    assert refused.status_code == 400 and 'id="pool-1-max_run_minutes"' in refused.get_data(
        as_text=True)
    saved = client.post("/miner/pools/1/limits", data={**fields, "max_run_minutes": "240"})
    assert saved.status_code == 303
    with app.app_context():
        assert pool_limits(default_pool()).max_run_minutes == 240


def test_a_notebooks_limit_is_checked_and_copied_to_each_run(ctx):  # noqa: F811 (the fixture)
    set_pool_limits(default_pool(), max_run_minutes=60)
    rene = User.get(User.name == "rene")
    with pytest.raises(TaskError) as info:
        create_notebook(rene, "lab", IMAGE, "1 TPU", "default", max_run_minutes=61)
    assert "at most 60 minutes" in info.value.errors["max_run_minutes"]
    notebook = create_notebook(rene, "lab", IMAGE, "1 TPU", "default", max_run_minutes=15)
    run = active_run(notebook)
    assert (notebook.max_run_minutes, run.max_run_minutes) == (15, 15)
    started(run, 16 * MINUTE_NS)
    assert stop_overdue() == [run.id]
    assert Task.get_by_id(run.id).stop_reason == RUN_TIME_REACHED


def test_the_notebook_page_counts_down(rene, app):
    with app.app_context():
        notebook = create_notebook(User.get(User.name == "rene"), "lab", IMAGE, "1 TPU",
                                   "default", max_run_minutes=15)
        started(active_run(notebook), 5 * MINUTE_NS)
    page = rene.get(f"/renter/notebooks/{notebook.id}").get_data(as_text=True)
    assert 'id="run-countdown"' in page and "0 h 10 min</span>" in page
    assert "0 h 15 min" in page  # its maximum, among its facts
