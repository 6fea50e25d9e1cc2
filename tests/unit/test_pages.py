"""Every menu entry of both areas answers; planned pages say so plainly."""

import pytest

from portal.miner.blueprint import area as miner_area
from portal.renter.blueprint import area as renter_area
from tests.conftest import PASSWORD
from tests.support import login


@pytest.mark.parametrize("role,name,menu,planned", [
    ("miner", "mina", miner_area.menu, miner_area.planned),
    ("renter", "rene", renter_area.menu, renter_area.planned),
])
def test_every_menu_page_answers(client, accounts, role, name, menu, planned):
    login(client, role, name, PASSWORD)
    html = client.get(f"/{role}/").get_data(as_text=True)
    for page, _label in menu:
        # a page's address is its key with dashes: "machine_time" is /miner/machine-time
        path = f"/{role}/" if page == "overview" else f"/{role}/{page.replace('_', '-')}"
        assert f'href="{path}"' in html, f"{page} missing from the menu"
        response = client.get(path)
        assert response.status_code == 200, path
        assert ("This page is not built yet." in response.get_data(as_text=True)) == (
            page in planned), path


def test_unknown_page_is_404(client, accounts):
    login(client, "miner", "mina", PASSWORD)
    assert client.get("/miner/no-such-page").status_code == 404
