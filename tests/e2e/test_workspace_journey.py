"""The issue's "done when", as a new renter does it in a real Chromium on real Podman: from
the overview's quick-create buttons they upload their code (a zip, through the restartable
upload), make a dataset, build an image from a Containerfile (its log streamed), start a
training task that uses all three, save it as a template, run it again from the template,
and find both runs and what they cost on the overview.
"""

import zipfile

import pytest
from playwright.sync_api import expect

from scheduler.podman import PodmanBackend
from tests.conftest import PASSWORD, TEST_IMAGE
from tests.e2e.helpers import heading, query, scheduling_server, sign_in
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.podman]


@pytest.fixture
def lab(live_server_factory, podman_service, test_image, tmp_path):
    """A live server with its scheduler on, the local node Ready and a spec "small" at 36
    UNC an hour (10,000 micro-units a second)."""
    (tmp_path / "host").mkdir()
    server, _miner = scheduling_server(live_server_factory, tmp_path / "host", price="36")
    yield server
    backend = PodmanBackend(podman_service.url)
    for (container,) in query(server, "SELECT container FROM replicas WHERE container != ''"):
        backend.remove(container)
    for (reference,) in query(server, "SELECT reference FROM images WHERE user_id IS NOT NULL"):
        backend.remove_image(reference)


def quick_create(page, server, what):
    """Go to the overview and press its quick-create button for ``what``."""
    page.goto(f"{server.url}/renter/")
    page.locator(f'#quick-create a[data-create="{what}"]').click()


def test_from_nothing_to_a_templated_task_on_own_code_data_and_image(page, lab, tmp_path):
    code = tmp_path / "code.zip"
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("hello.txt", "my code\n")
    data = tmp_path / "numbers.csv"
    data.write_text("4,5,6\n")

    sign_in(page, lab.url, "renter", "rene", PASSWORD)
    expect(page).to_have_url(f"{lab.url}/renter/")
    expect(page.locator("#nothing-running")).to_be_visible()

    quick_create(page, lab, "algorithms")
    form = page.locator("#algorithm-form")
    form.get_by_label("Name", exact=True).fill("mycode")
    form.locator("#version-files").set_input_files(str(code))
    form.get_by_role("button", name="Create algorithm").click()
    expect(heading(page)).to_have_text("mycode")

    quick_create(page, lab, "datasets")
    form = page.locator("#dataset-form")
    form.get_by_label("Name", exact=True).fill("numbers")
    form.locator("#version-files").set_input_files(str(data))
    form.get_by_role("button", name="Create dataset").click()
    expect(heading(page)).to_have_text("numbers")

    quick_create(page, lab, "images")
    page.locator("#build-image-form").get_by_label("Name", exact=True).fill("my image")
    page.get_by_label("Containerfile").fill(
        f"FROM {TEST_IMAGE}\nRUN echo built by me > /built.txt\n")
    page.locator("#build-image-button").click()
    expect(heading(page)).to_have_text("my image")
    expect(page.locator('#image-state [data-state="ready"]')).to_be_visible(timeout=60_000)
    image = page.locator("dl.facts code").first.inner_text()

    quick_create(page, lab, "tasks")
    form = page.locator("#task-form")
    form.get_by_label("Name", exact=True).fill("journey")
    form.get_by_label("Image", exact=True).fill(image)
    form.get_by_label("Command: one argument per line").fill(
        "cat\nhello.txt\n/dataset/numbers.csv\n/built.txt")
    form.get_by_label("Algorithm version (at /code)").select_option(index=1)
    form.get_by_label("Dataset version (read-only at /dataset)").select_option(index=1)
    form.locator('select[name="subtasks-0-spec"]').select_option("small")
    form.get_by_role("button", name="Submit task").click()
    expect(page.locator("#task-state [data-state]")).to_have_attribute(
        "data-state", "succeeded", timeout=30_000)
    first = page.url
    page.locator('a[data-link="logs"]').first.click()
    expect(page.locator("#log")).to_have_text("my code\n4,5,6\nbuilt by me\n")

    page.goto(first)
    form = page.locator("#save-as-template")
    form.get_by_label("Template name").fill("journey again")
    form.get_by_role("button", name="Save as template").click()
    expect(heading(page)).to_have_text("journey again")
    page.goto(f"{lab.url}/renter/templates")
    page.locator("tr[data-template]").filter(has_text="journey again").get_by_role(
        "button", name="Run").click()
    expect(page.locator("#task-template")).to_have_text("journey again")
    expect(page.locator("#task-code")).to_have_text("mycode v1")
    expect(page.locator("#task-dataset")).to_have_text("numbers v1")
    expect(page.locator("#task-state [data-state]")).to_have_attribute(
        "data-state", "succeeded", timeout=30_000)
    assert page.url != first

    # A run's last charge follows its end by a pass: the overview shows settled figures.
    wait_for(lambda: query(lab, "SELECT COUNT(*) FROM replicas WHERE NOT settled") == [(0,)],
             timeout=10, what="both runs to be settled")
    page.goto(f"{lab.url}/renter/")
    expect(page.locator('#task-counts [data-count="succeeded"]')).to_contain_text("2")
    runs = page.locator("#latest-runs tr[data-task]")
    expect(runs).to_have_count(2)
    charged = {int(row.get_attribute("data-task")): int(row.locator(
        "td[data-charged]").get_attribute("data-charged")) for row in runs.all()}
    # What the overview says each run cost is what the ledger charged it, to the micro-unit.
    ledger = dict(query(lab, "SELECT task_id, -SUM(amount) FROM ledger WHERE kind = 'charge' "
                        "GROUP BY task_id"))
    assert charged == {task: ledger.get(task, 0) for task in charged} and ledger
    spent = sum(int(m) for m in page.locator("#spend-table tr[data-micro]").evaluate_all(
        "rows => rows.map(r => r.dataset.micro)"))
    assert spent == sum(charged.values())
    expect(page.locator("#spend-chart canvas")).to_have_count(1)
