"""Templates and the maximum run time in a real Chromium, on a live server whose scheduler
runs busybox tasks on real Podman: a finished task is saved as a template from its page,
run again in one click from the Templates page (it succeeds, and its page names the
template); a running task with a maximum run time counts down on its page.
"""

import re
from types import SimpleNamespace

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.e2e.helpers import heading, menu_links, scheduling_server, sign_in
from tests.integration.test_replica_io import api
from tests.support import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def lab(live_server_factory, tmp_path):
    """A live server with its scheduler on, the local node Ready, a spec "small" and a
    renter's token."""
    (tmp_path / "host").mkdir()
    server, _miner = scheduling_server(live_server_factory, tmp_path / "host")
    renter = server.flask("token", "create", "rene").stdout.strip()
    return SimpleNamespace(server=server, renter=renter)


def submit(lab, image, name, argv, state, **more):
    """Rene's task, submitted through the API, once it is in ``state``; its id."""
    task = api(lab.server, lab.renter, "POST", "/tasks", {
        "name": name, "image": image, "argv": argv, "pool": "default",
        "subtasks": [{"role": "main", "spec": "small", "replicas": 1}], **more})
    wait_for(lambda: api(lab.server, lab.renter, "GET", f"/tasks/{task['id']}")["state"] == state,
             timeout=30, interval=0.2, what=f"task {name} to be {state}")
    return task["id"]


def test_save_as_template_and_run_it_again_from_the_templates_page(page, lab, test_image):
    task_id = submit(lab, test_image, "hello", ["echo", "hello"], "succeeded",
                     max_run_minutes=30)
    sign_in(page, lab.server.url, "renter", "rene", PASSWORD)
    expect(page.locator("#logout")).to_be_visible()
    page.goto(f"{lab.server.url}/renter/tasks/{task_id}")
    expect(page.locator("#task-max-run")).to_have_text("0 h 30 min")
    form = page.locator("#save-as-template")
    form.get_by_label("Template name").fill("greeting")
    form.get_by_role("button", name="Save as template").click()
    expect(heading(page)).to_have_text("greeting")
    expect(page.locator("#template-definition")).to_contain_text("echo")

    menu_links(page).get_by_text("Templates", exact=True).click()
    expect(heading(page)).to_have_text("Templates")
    row = page.locator("tr[data-template]").filter(has_text="greeting")
    row.get_by_role("button", name="Run").click()
    expect(page.get_by_role("status").filter(has_text="Submitted")).to_have_text(
        "Submitted 'hello'.")
    expect(page.locator("#task-template")).to_have_text("greeting")
    expect(page.locator("#task-state [data-state]")).to_have_attribute(
        "data-state", "succeeded", timeout=30_000)
    assert not page.url.endswith(f"/tasks/{task_id}")


def test_a_running_task_counts_down_its_maximum_run_time(page, lab, test_image):
    task_id = submit(lab, test_image, "sleeper", ["sleep", "600"], "running",
                     max_run_minutes=90)
    sign_in(page, lab.server.url, "renter", "rene", PASSWORD)
    expect(page.locator("#logout")).to_be_visible()
    page.goto(f"{lab.server.url}/renter/tasks/{task_id}")
    countdown = page.locator("#run-countdown")
    expect(countdown).to_contain_text(re.compile(r"Stops in 1 h (29|30) min"))
    expect(countdown).to_contain_text("maximum run time 1 h 30 min")
    # The script (no inline JavaScript: the page's CSP forbids it) keeps the count.
    expect(countdown).to_have_attribute("data-until", re.compile(r"^\d+$"))
    page.once("dialog", lambda dialog: dialog.accept())  # "Stop sleeper?"
    page.locator("#stop-task").click()
    expect(page.locator("#run-countdown")).to_have_count(0, timeout=30_000)


def test_a_template_made_from_the_new_task_form(page, lab, test_image):
    sign_in(page, lab.server.url, "renter", "rene", PASSWORD)
    expect(page.locator("#logout")).to_be_visible()
    page.goto(f"{lab.server.url}/renter/templates")
    expect(heading(page)).to_have_text("Templates")
    page.locator("#new").get_by_role("button", name="Create a template").click()
    form = page.locator("#task-form")
    form.get_by_label("Name", exact=True).fill("nightly")
    form.get_by_label("Image", exact=True).fill(test_image)
    form.get_by_label("Command: one argument per line").fill("echo\nnight")
    form.locator('select[name="subtasks-0-spec"]').select_option("small")
    form.get_by_label("Maximum run time (minutes)").fill("45")
    form.get_by_label("Template name").fill("every night")
    form.get_by_role("button", name="Save as a new template").click()
    expect(heading(page)).to_have_text("every night")
    expect(page.locator("#template-definition")).to_contain_text("0 h 45 min")
    page.locator("#edit-run-template").click()
    expect(page.locator("#template-origin")).to_contain_text("every night")
    page.locator("#submit-task").click()
    expect(page.locator("#task-template")).to_have_text("every night")
