"""The Slurm pool's "done when" in a real Chromium (docs/slurm.md): the miner adds a real
two-node Slurm cluster on the Nodes page, sees it answer, maps its partition to a new pool on
the Pools page and finds its compute nodes Ready; a renter of that pool starts a notebook and
a two-replica training task there from their pages, sees both run on the cluster's nodes
(the notebook opens in JupyterLab) and stops both. Nothing is left behind: no container of
a job, no job running, every task's job done, the ledger consistent.
"""

import re

import pytest
from playwright.sync_api import expect

from scheduler.backend import INSTANCE_LABEL, SLURM_JOB_LABEL
from scheduler.podman import PodmanBackend
from tests.conftest import ARTIFACTS, PASSWORD
from tests.e2e.helpers import (
    heading,
    new_jupyter_notebook,
    open_jupyterlab,
    query,
    run_cell,
    scheduling_server,
    sign_in,
    sign_out,
)
from tests.integration.test_replica_io import api
from tests.slurm_cluster import NODES, PARTITION
from tests.support import fund_on, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.podman, pytest.mark.slurm]

CLUSTER = "lab"


@pytest.fixture(scope="module")
def cluster(slurm_podman_cluster):
    return slurm_podman_cluster


@pytest.fixture
def cloud(live_server_factory, podman_service, jupyter_image, test_image, cluster, tmp_path):
    """A live server with its scheduler on and, through its API and commands (not part of
    the journey): the TPU resource and renter tina of group "lab", funded; (the server, the
    miner's API token)."""
    (tmp_path / "host").mkdir()
    server, miner = scheduling_server(live_server_factory, tmp_path / "host")
    server.flask("user", "add", "tina", "--role", "renter", "--group", "lab",
                 "--password-stdin", stdin=PASSWORD)
    fund_on(server, "tina")
    api(server, miner, "POST", "/resources", {"name": "TPU 1684X", "kind": "sophgo.com/bm1684x"})
    yield server, miner
    backend = PodmanBackend(podman_service.url)
    for (container,) in query(server, "SELECT container FROM replicas WHERE container != ''"):
        backend.remove(container)
    cluster.settle()


def add_specs(server, miner):
    """Specs "tpu-one" (1 CPU, 0.5 GB, 1 chip) and "tpu-two" (1 CPU, 0.25 GB, 2 chips),
    through the API (a spec needs a node with its chips)."""
    for name, memory, chips in (("tpu-one", "0.5", 1), ("tpu-two", "0.25", 2)):
        api(server, miner, "POST", "/specs", {"name": name, "cpu": "1", "memory_gb": memory,
                                              "price": "1", "resources": {"TPU 1684X": chips}})


def add_the_cluster(page, server, cluster, podman_url):
    """The miner adds the cluster on the Nodes page and tests its connection."""
    page.goto(f"{server.url}/miner/nodes")
    form = page.locator("#cluster-form")
    form.get_by_label("Name", exact=True).fill(CLUSTER)
    form.get_by_label("slurmrestd address").fill(f"unix://{cluster.rest}")
    form.get_by_label("Podman on a compute node").fill(podman_url)
    form.get_by_label("Host root of a compute node").fill(f"{cluster.root}/{{node}}")
    form.get_by_role("button", name="Add cluster").click()
    expect(page.locator(".flash")).to_contain_text(f"Added Slurm cluster '{CLUSTER}'.")
    row = page.locator(f'#slurm-clusters tr[data-cluster="{CLUSTER}"]')
    row.get_by_role("button", name="Test connection").click()
    expect(row.locator(".badge.ok")).to_have_text("ok")


def map_a_pool(page, server):
    """The miner creates pool "tpu" on the Pools page, maps it to the cluster's partition and
    binds group "lab" to it."""
    page.goto(f"{server.url}/miner/pools")
    page.locator("#pool-form").get_by_label("Name", exact=True).fill("tpu")
    page.get_by_role("button", name="Create pool").click()
    pool = page.locator('article.pool[data-pool="tpu"]')
    mapping = pool.locator("form.slurm")
    mapping.get_by_label("Slurm cluster").select_option(label=CLUSTER)
    mapping.get_by_label("Partition").fill(PARTITION)
    mapping.get_by_role("button", name="Save partition").click()
    expect(page.locator(".flash")).to_contain_text(
        f"Pool 'tpu' is now a Slurm pool of partition '{PARTITION}'.")
    expect(pool.locator(".slurm-pool")).to_contain_text(f"partition {PARTITION} of cluster "
                                                        f"{CLUSTER}")
    pool.get_by_label("lab", exact=True).check()
    pool.get_by_role("button", name="Save groups").click()
    expect(pool.locator(".access")).to_contain_text("Only renters in these groups")


def start_notebook(page, server):
    """The renter creates and starts notebook "tpu lab" in pool tpu; its id."""
    page.goto(f"{server.url}/renter/notebooks/new")
    form = page.locator("#notebook-form")
    form.get_by_label("Name", exact=True).fill("tpu lab")
    # The renter sees which pool Slurm places (and what it runs) before choosing it.
    expect(form.locator('#pool option[value="tpu"]')).to_have_text(
        f"tpu · Slurm partition {PARTITION} · runs small, tpu-one, tpu-two")
    form.locator("#pool").select_option("tpu")
    form.locator("#spec").select_option("tpu-one")
    page.locator("#create-notebook").click()
    expect(heading(page)).to_have_text("tpu lab")
    expect(page.locator("#notebook-pool")).to_have_text(f"tpu · Slurm partition {PARTITION}")
    return int(page.url.rsplit("/", 1)[1])


def submit_training(page, server, image):
    """The renter submits "tpu train" (two replicas of spec tpu-two, a long sleep) in pool
    tpu; its id."""
    page.goto(f"{server.url}/renter/tasks/new")
    form = page.locator("#task-form")
    form.get_by_label("Name", exact=True).fill("tpu train")
    form.locator("#pool").select_option("tpu")
    form.get_by_label("Image", exact=True).fill(image)
    form.get_by_label("Command: one argument per line").fill("sleep\n600")
    form.locator('input[name="subtasks-0-role"]').fill("worker")
    form.locator('select[name="subtasks-0-spec"]').select_option("tpu-two")
    form.locator('input[name="subtasks-0-replicas"]').fill("2")
    form.get_by_role("button", name="Submit task").click()
    expect(heading(page)).to_have_text("tpu train")
    return int(page.url.rsplit("/", 1)[1])


def stop_from_its_page(page, url, button, state):
    """Open ``url``, press Stop ``button`` (accepting its confirm), wait until stopped."""
    page.goto(url)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(button).click()
    expect(page.locator(f"#{state} [data-state]")).to_have_attribute(
        "data-state", "stopped", timeout=60_000)


def nodes_of(server, where):
    """The node names of the replicas of the tasks ``where`` (SQL on ``tasks t``)."""
    return [name for (name,) in query(
        server, "SELECT n.name FROM replicas r JOIN tasks t ON r.task_id = t.id "
                f"JOIN nodes n ON r.node_id = n.id WHERE {where} ORDER BY r.id")]


def leftovers(podman_service, instance, jobs):
    """The names of this server's running containers labelled with one of Slurm ``jobs``
    (ended ones stay, exited, with their logs, until their task is deleted)."""
    with PodmanBackend(podman_service.url).client() as client:
        found = client.containers.list(filters=[
            f"label={SLURM_JOB_LABEL}", f"label={INSTANCE_LABEL}={instance}"])
    return [c.name for c in found if c.labels.get(SLURM_JOB_LABEL) in jobs]


def test_a_slurm_pool_from_the_miners_pages_to_a_renters_notebook_and_task(
        page, cloud, cluster, podman_service, test_image):
    server, miner = cloud
    sign_in(page, server.url, "miner", "mina", PASSWORD)
    expect(page).to_have_url(f"{server.url}/miner/")
    add_the_cluster(page, server, cluster, podman_service.url)
    map_a_pool(page, server)
    # Discovery brings the partition's nodes into the pool, Ready, three chips each.
    page.goto(f"{server.url}/miner/nodes")
    for node in NODES:
        row = page.locator(f'#node-table tr[data-node="{CLUSTER}-{node}"]')
        expect(row.locator(".badge.ok")).to_have_text("Ready", timeout=30_000)
        expect(row).to_contain_text("3 × sophgo.com/bm1684x")
        expect(row.locator("td").nth(6)).to_have_text("tpu")  # its pool
    # The clusters' node count follows the node table's refresh.
    expect(page.locator(f'#slurm-clusters tr[data-cluster="{CLUSTER}"] td').nth(2)
           ).to_have_text("2", timeout=15_000)
    sign_out(page)
    add_specs(server, miner)

    sign_in(page, server.url, "renter", "tina", PASSWORD)
    expect(page).to_have_url(f"{server.url}/renter/")
    notebook = start_notebook(page, server)
    notebook_url = page.url
    expect(page.locator("#notebook-state [data-state]")).to_have_attribute(
        "data-state", "running", timeout=90_000)
    open_button = page.locator(f'#open-notebook button[data-open="{notebook}"]')
    expect(open_button).to_be_visible(timeout=90_000)  # JupyterLab answers
    (node,) = nodes_of(server, f"t.notebook_id = {notebook}")
    assert node in {f"{CLUSTER}-{name}" for name in NODES}
    expect(page.locator("table.replicas")).to_contain_text(node)
    lab = open_jupyterlab(page, open_button)
    (replica,) = query(server, "SELECT r.id FROM replicas r JOIN tasks t ON r.task_id = t.id "
                               f"WHERE t.notebook_id = {notebook}")[0]
    base = f"{server.notebook_url}/nb/{replica}/"
    expect(lab).to_have_url(re.compile(re.escape(base) + "lab"), timeout=30_000)
    panel = new_jupyter_notebook(lab, base)
    # The chip Slurm gave it is the container's first and only one.
    output = run_cell(lab, panel, "import os; sorted(os.listdir('/dev'))").first
    expect(output).to_contain_text("'bm-sophon0'", timeout=60_000)
    expect(output).not_to_contain_text("'bm-sophon1'")
    lab.close()

    task = submit_training(page, server, test_image)
    task_url = page.url
    expect(page.locator("#task-state [data-state]")).to_have_attribute(
        "data-state", "running", timeout=90_000)
    (job,) = query(server, f"SELECT slurm_job FROM tasks WHERE id = {task}")[0]
    page.reload()  # the task's facts do not refresh themselves
    expect(page.locator("#task-pool")).to_have_text(
        f"tpu · Slurm partition {PARTITION} · Slurm job {job}")
    replicas = page.locator("table.replicas tbody tr")
    expect(replicas).to_have_count(2)
    placed = nodes_of(server, f"t.id = {task}")
    assert len(placed) == 2 and set(placed) <= {f"{CLUSTER}-{name}" for name in NODES}
    for row, name in zip(replicas.all(), placed, strict=True):
        expect(row.locator("td").nth(2)).to_have_text(name)
        expect(row.locator('[data-state="running"]')).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "test_slurm_journey-task.png", full_page=True)
    (instance,) = query(server, "SELECT value FROM settings WHERE key = 'instance_id'")[0]
    running = query(server, "SELECT slurm_job FROM tasks WHERE slurm_job IS NOT NULL")
    assert len(leftovers(podman_service, instance, {str(j) for (j,) in running})) == 3

    stop_from_its_page(page, task_url, "#stop-task", "task-state")
    stop_from_its_page(page, notebook_url, "#stop-notebook", "notebook-state")

    # Nothing leaks: every task's job is done, cancelled in Slurm, and no container runs.
    jobs = query(server, "SELECT slurm_job FROM tasks WHERE slurm_job IS NOT NULL")
    assert len(jobs) == 2
    wait_for(lambda: query(server, "SELECT COUNT(*) FROM tasks WHERE slurm_job IS NOT NULL "
                                   "AND NOT slurm_job_done") == [(0,)],
             timeout=30, what="every task's Slurm job done")
    wait_for(lambda: not [job for job in cluster.request("GET", "/jobs")[1]["jobs"]
                          if job["job_state"] in ("PENDING", "RUNNING")],
             timeout=30, what="no Slurm job running")
    assert leftovers(podman_service, instance, {str(job) for (job,) in jobs}) == []
    assert server.flask("billing", "verify").stdout.strip() == "The ledger is consistent."
