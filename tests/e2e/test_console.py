"""A replica's web console and live log in a real Chromium, against a live server whose
scheduler runs the task on real Podman."""

import pytest
from playwright.sync_api import expect

from scheduler.podman import PodmanBackend
from tests.conftest import PASSWORD
from tests.e2e.helpers import sign_in
from tests.integration.test_replica_io import serve_a_running_task

pytestmark = [pytest.mark.e2e, pytest.mark.podman]


@pytest.fixture(scope="module")
def served(module_live_server_factory, podman_service, test_image, tmp_path_factory):
    """The live server running rene's task "shell", which prints "first <b>line</b>", then
    "second-line" once /dev/shm/go exists. One for both tests that use it: typing in the
    console does not write to the task's log, and the log's test is the one that makes
    /dev/shm/go."""
    served = serve_a_running_task(module_live_server_factory, test_image,
                                  tmp_path_factory.mktemp("served"))
    yield served
    PodmanBackend(podman_service.url).remove(served.container)


def open_from_task_page(page, served, link):
    sign_in(page, served.server.url, "renter", "rene", PASSWORD)
    expect(page).to_have_url(f"{served.server.url}/renter/")
    page.goto(f"{served.server.url}/renter/tasks/{served.task}")
    page.locator(f'tr[data-replica="{served.replica}"] a[data-link="{link}"]').click()


def test_typing_in_the_console_runs_in_the_replica(page, served):
    open_from_task_page(page, served, "console")
    expect(page.locator("#console-status")).to_contain_text("Connected")
    rows = page.locator("#console .xterm-rows")
    expect(rows).to_contain_text("/ #")  # the shell's prompt
    page.locator("#console").click()
    page.keyboard.type("echo hi-$((1+1))")
    page.keyboard.press("Enter")
    expect(rows).to_contain_text("hi-2")


def test_the_log_page_shows_new_lines_as_text_while_the_replica_runs(page, served):
    open_from_task_page(page, served, "logs")
    log = page.locator("#log")
    expect(log).to_have_text("first <b>line</b>\n")  # markup arrives as text
    expect(page.locator("#log-status")).to_contain_text("Following")
    # In a second tab of the same session, the console makes the task print its next line.
    console = page.context.new_page()
    console.goto(f"{served.server.url}/renter/tasks/{served.task}/replicas/{served.replica}"
                 "/console")
    expect(console.locator("#console-status")).to_contain_text("Connected")
    console.locator("#console").click()
    console.keyboard.type("echo > /dev/shm/go")
    console.keyboard.press("Enter")
    expect(log).to_have_text("first <b>line</b>\nsecond-line\n")


@pytest.fixture
def quiet(live_server_factory, podman_service, test_image, tmp_path):
    """Like ``served``, but the task prints nothing until /dev/shm/go exists."""
    served = serve_a_running_task(live_server_factory, test_image, tmp_path, argv=QUIET)
    served.backend = PodmanBackend(podman_service.url)
    yield served
    served.backend.remove(served.container)


QUIET = ["sh", "-c", "while [ ! -e /dev/shm/go ]; do sleep 0.1; done; echo first-line; "
         "exec sleep 600"]


def test_the_log_page_follows_a_replica_that_has_printed_nothing_yet(page, quiet):
    open_from_task_page(page, quiet, "logs")
    status = page.locator("#log-status")
    expect(status).to_contain_text("Following")
    expect(page.locator("#log")).to_have_text("")
    # Longer than the node's answer timeout (5 s), after which the stream used to give up.
    page.wait_for_timeout(7_000)
    expect(status).to_contain_text("Following")
    assert quiet.backend.exec(quiet.container, ["sh", "-c", "echo > /dev/shm/go"]).exit_code == 0
    expect(page.locator("#log")).to_have_text("first-line\n", timeout=15_000)
    expect(status).to_contain_text("Following")
