"""The Images page's Build button runs the real ``build_jupyter_image`` with the app's Podman
environment: once the image exists (the ``jupyter_image`` fixture builds it), every step is
reported as skipped, in seconds, and the page and JSON show the image's JupyterLab version.
"""

import re

import pytest

from scheduler.jupyter_image import JUPYTERLAB_VERSION, STEPS, build_jupyter_image
from tests.conftest import PASSWORD
from tests.support import csrf_token, login

pytestmark = pytest.mark.podman


def test_build_through_the_page_skips_every_step_of_an_existing_image(app, client, accounts,
                                                                       jupyter_image):
    builds = app.extensions["hourglass.image_builds"]
    assert builds.build is build_jupyter_image and builds.image == jupyter_image
    login(client, "miner", "mina", PASSWORD)
    token = csrf_token(client, "/miner/images")
    response = client.post("/miner/images/build", data={"force": "0", "csrf_token": token})
    assert response.status_code == 303
    builds.wait(60)

    data = client.get("/api/v1/images/jupyter/build").json
    assert data["status"] == "succeeded", data["error"]
    assert data["installed_version"] == JUPYTERLAB_VERSION
    assert (data["step"], data["step_count"], data["step_name"]) == (4, 4, "image")
    texts = [line["text"] for line in data["lines"]]
    assert texts == [f"{name}: skipped, {jupyter_image} exists (JupyterLab {JUPYTERLAB_VERSION})"
                     for name in STEPS]

    html = client.get("/miner/images").get_data(as_text=True)
    assert f"JupyterLab {JUPYTERLAB_VERSION}" in html and 'badge ok">built' in html
    assert re.search(r'<progress id="build-progress" max="4" value="4"', html)
    assert f"image: skipped, {jupyter_image} exists" in html
