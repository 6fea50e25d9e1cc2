"""From a discovered chip to a renter's overview, in a real Chromium on a real live server.

The live server's local node reads a fake host tree with two SC7 cards (six
BM1684X chips, real device nodes) and discovers every second. The miner names
the chips "TPU 1684X", makes a spec of two of them, a group "lab-a" and a pool
"Lab-A" holding the node and bound to lab-a: then a renter outside lab-a no
longer sees the spec, and a renter in it does.
"""

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.e2e.helpers import heading, menu_links, sign_in
from tests.fake_hosts import make_sophgo_host
from tests.support import wait_for

pytestmark = pytest.mark.e2e

BM1684X = "sophgo.com/bm1684x"


@pytest.fixture
def server(live_server_factory, tmp_path):
    """A live server whose local node has six BM1684X chips; mina (miner), rene and carol
    (renters in no group yet)."""
    host = tmp_path / "host"
    make_sophgo_host(host, cards=[("0x1686", 3)] * 2)
    server = live_server_factory(accounts=True, HOURGLASS_HOST_ROOT=str(host),
                                 HOURGLASS_DISCOVERY_SECONDS="1")
    server.flask("user", "add", "carol", "--role", "renter", "--password-stdin", stdin=PASSWORD)
    return server.start()


def open_page(page, label):
    menu_links(page).get_by_text(label, exact=True).click()
    expect(heading(page)).to_have_text(label)


def settled(page):
    """Wait until htmx has processed what it just swapped in (its triggers bind ~20 ms after
    the new content shows), so typing next fires them."""
    page.wait_for_function("() => !document.body.classList.contains('htmx-settling')")


def discovered_node(page):
    """Reload the Resources page until the local node shows its six chips; its CPU cores."""
    row = page.locator('#system-resources tr[data-node="local"]')

    def shown():
        page.reload()
        return row.count() == 1 and row.locator("td").last.inner_text() == "0 / 6"

    wait_for(shown, timeout=30, interval=0.5, what="the local node with 6 chips")
    expect(page.locator("#system-resources thead")).to_contain_text(BM1684X)
    expect(row).to_contain_text("Ready")
    return int(float(row.locator("td").nth(2).inner_text().split("/")[1]))  # "in use / all"


def spec_names(page):
    return page.locator("#open-specs tr[data-spec]")


def test_a_pool_for_a_group_decides_who_sees_a_spec(page, server, new_page):
    sign_in(page, server.url, "miner", "mina", PASSWORD)
    open_page(page, "Resources")
    cores = discovered_node(page)

    form = page.locator("#resource-form")
    form.get_by_label("Name").fill("TPU 1684X")
    form.get_by_label("System resource").select_option(BM1684X)
    form.get_by_label("Description").fill("Sophgo SC7, 3 chips per card")
    form.get_by_role("button", name="Create custom resource").click()
    expect(page.get_by_text("Created custom resource 'TPU 1684X'.")).to_be_visible()
    tpu = page.locator('#custom-resources tr[data-resource="TPU 1684X"]')
    expect(tpu).to_contain_text(BM1684X)
    expect(tpu.locator("td").nth(2)).to_have_text("6")

    # The seed's spec asks for 4 cores; a node of fewer cores is refused with the reason,
    # so the spec asks for what this machine has, up to 4.
    open_page(page, "Specs")
    form = page.locator("#spec-form")
    form.get_by_label("CPU cores").fill(str(cores + 1))
    form.get_by_label("Memory (GB)").fill("2")
    form.get_by_label("TPU 1684X").fill("2")
    form.get_by_label("Price per machine-hour (UNC)").fill("12.5")
    wanted = f"{min(cores, 4)} CPU-2 GB-2 TPU 1684X"
    expect(page.locator("#spec-suggestion")).to_have_text(
        f"Suggested name: {cores + 1} CPU-2 GB-2 TPU 1684X")
    form.get_by_role("button", name="Save spec").click()
    expect(page.locator("#spec-form .error-text")).to_have_text(
        f"No node has {cores + 1} CPU cores; the largest has {cores}.")
    expect(page.locator("#specs")).to_contain_text("No specs yet.")
    settled(page)
    page.locator("#spec-form").get_by_label("CPU cores").fill(str(min(cores, 4)))
    expect(page.locator("#spec-suggestion")).to_have_text(f"Suggested name: {wanted}")
    page.locator("#spec-form").get_by_role("button", name="Save spec").click()
    expect(page.get_by_text(f"Saved spec '{wanted}'.")).to_be_visible()
    row = page.locator(f'#specs tr[data-spec="{wanted}"]')
    expect(row).to_contain_text("2 × TPU 1684X")
    expect(row).to_contain_text("12.50 UNC")
    expect(row.locator(".unfit")).to_have_count(0)

    # Before any pool: the default pool is open to every renter.
    renes = new_page()
    sign_in(renes, server.url, "renter", "rene", PASSWORD)
    expect(spec_names(renes)).to_have_count(1)
    expect(spec_names(renes).first).to_contain_text(wanted)

    open_page(page, "Users")
    page.locator("#new-group").get_by_label("Group name").fill("lab-a")
    page.locator("#new-group").get_by_role("button", name="Create group").click()
    expect(page.get_by_text("Created group 'lab-a'.")).to_be_visible()
    carol = page.locator('tr[data-user="carol"]')
    carol.get_by_label("lab-a").check()
    carol.get_by_role("button", name="Save groups").click()
    expect(page.get_by_text("Groups of 'carol' saved.")).to_be_visible()

    open_page(page, "Pools")
    page.locator("#pool-form").get_by_label("Name").fill("Lab-A")
    page.locator("#pool-form").get_by_role("button", name="Create pool").click()
    expect(page.get_by_text("Created pool 'Lab-A'.")).to_be_visible()
    lab = page.locator('article[data-pool="Lab-A"]')
    expect(lab.locator(".access")).to_have_text("No group bound: no renter can use this pool yet.")

    default = page.locator('article[data-pool="default"]')
    default.get_by_label("Pool of local").select_option(label="Lab-A")
    default.locator('tr[data-node="local"]').get_by_role("button", name="Move").click()
    expect(page.get_by_text("Node 'local' is now in pool 'Lab-A'.")).to_be_visible()
    expect(lab.locator('tr[data-node="local"]')).to_be_visible()
    expect(default).to_contain_text("No nodes in this pool.")
    expect(lab.locator(".capacity")).to_contain_text(re.compile(r"6\s+" + re.escape(BM1684X)))

    lab.get_by_label("lab-a").check()
    lab.get_by_role("button", name="Save groups").click()
    expect(page.get_by_text("Groups of pool 'Lab-A' saved.")).to_be_visible()
    expect(lab.get_by_label("lab-a")).to_be_checked()
    expect(lab.locator(".access")).to_have_text("Only renters in these groups use this pool.")
    expect(lab.locator("ul.specs")).to_contain_text(wanted)

    renes.reload()
    expect(spec_names(renes)).to_have_count(0)
    expect(renes.locator("#open-specs")).to_contain_text("No spec is open to you yet")

    carols = new_page()
    sign_in(carols, server.url, "renter", "carol", PASSWORD)
    expect(spec_names(carols)).to_have_count(1)
    row = spec_names(carols).first
    expect(row).to_contain_text(wanted)
    expect(row).to_contain_text("12.50 UNC")
    expect(row).to_contain_text("Lab-A")
    expect(carols.locator('#open-pools li[data-pool="Lab-A"]')).to_be_visible()
