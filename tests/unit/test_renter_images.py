"""The renter's images: the rules (``portal.images``), the Images pages and the JSON API;
owner checks (another renter's image is 404), delete guarded, the JupyterLab rule, the
archive renaming (``scheduler.image_archive``) on real tar files.

The world is ``test_tasks``'s (nodes whose sockets do not answer: the page falls back to
what discovery found); rows an engine job would write are made directly.
"""

import io
import json
import tarfile

import pytest

from portal import images, notebooks
from portal.models import Image
from portal.task_input import TaskError
from scheduler.image_archive import ArchiveError, rename_archive
from tests.conftest import PASSWORD
from tests.support import csrf_token, login
from tests.unit import test_tasks as shared
from tests.unit.test_tasks import IMAGE, set_state

world = shared.world


ctx, renter = shared.ctx, shared.renter


def own(user, name="mine", jupyter=False, state="ready"):
    image = Image.create(user=user, name=name, source="build", state=state, jupyter=jupyter,
                         reference=f"{images.PREFIX}{user.id}/{name}:{Image.select().count() + 1}")
    return image


def preset(name="busybox", reference=IMAGE, jupyter=False):
    return Image.create(user=None, name=name, reference=reference, source="preset",
                        state="ready", jupyter=jupyter)


def test_renters_see_presets_and_their_own_only(ctx):
    mine, theirs, shared_one = own(renter()), own(renter("rita")), preset()
    assert images.visible(renter()) == [shared_one, mine]
    assert images.get_image_or_404(renter(), shared_one.id) == shared_one
    with pytest.raises(Exception) as found:
        images.get_image_or_404(renter(), theirs.id)
    assert found.value.code == 404


def test_choices_offer_ready_images_and_only_jupyter_ones_for_notebooks(ctx):
    lab = preset("JupyterLab", "localhost/hourglass-jupyter:latest", jupyter=True)
    plain = preset()
    mine = own(renter(), "lab2", jupyter=True)
    own(renter(), "broken", state="failed")
    own(renter("rita"), "ritas", jupyter=True)
    assert images.choices(renter()) == [(lab.reference, "JupyterLab"),
                                        (plain.reference, "busybox"), (mine.reference, "lab2")]
    assert [r for r, _n in images.choices(renter(), jupyter=True)] == [lab.reference,
                                                                       mine.reference]


def test_a_notebook_needs_jupyterlab_and_nobody_runs_another_renters_image(ctx):
    plain, theirs = own(renter()), own(renter("rita"), jupyter=True)
    with pytest.raises(TaskError) as refused:
        images.check_usable(renter(), plain.reference, jupyter=True)
    assert "JupyterLab" in refused.value.errors["image"]
    assert images.check_usable(renter(), plain.reference) == plain.reference
    for reference in (theirs.reference, f"{images.PREFIX}{renter('rita').id}/x:99"):
        with pytest.raises(TaskError):
            images.check_usable(renter(), reference)
    with pytest.raises(notebooks.NotebookError) as refused:
        notebooks.create_notebook(renter(), "lab", plain.reference, "1 TPU", "default")
    assert "JupyterLab" in refused.value.errors["image"]


def test_only_presets_own_images_and_full_names_outside_the_prefix_are_usable(ctx):
    # Podman resolves a short name by the end of any local name ("secret:12" finds
    # localhost/hourglass/u5/secret:12), so only names with a registry host pass.
    theirs = own(renter("rita"), "secret")
    mine, shared_one = own(renter(), "mine"), preset()
    short = theirs.reference.removeprefix("localhost/")
    for reference in (theirs.reference, short, short.split("/", 1)[1],
                      theirs.reference.rsplit("/", 1)[1], "busybox", "3f1a2b4c5d6e",
                      "localhost/x@sha256:" + "a" * 64, "docker.io/library/x@sha256:" + "b" * 64,
                      f"{images.PREFIX}{renter().id}/not-a-row:1",
                      theirs.reference.replace("localhost", "LOCALHOST")):
        with pytest.raises(images.ImageError):
            images.check_usable(renter(), reference)
    for reference in (mine.reference, shared_one.reference, "docker.io/library/python:3.12",
                      "localhost/hourglass-no-such-image:latest", "registry.example.com:5000/a/b"):
        assert images.check_usable(renter(), reference) == reference


def test_a_template_names_only_a_usable_image(ctx):
    from portal.task_templates import TemplateError, checked_definition
    fields = {"name": "t", "argv": ["/bin/true"], "pool": "default",
              "subtasks": [("main", "1 TPU", 1)]}
    with pytest.raises(TemplateError) as refused:
        checked_definition(renter(), {**fields, "image": own(renter("rita")).reference})
    assert "image" in refused.value.errors
    assert checked_definition(renter(), {**fields, "image": IMAGE})["image"] == IMAGE


@pytest.mark.parametrize("text, message", [
    ("", "FROM"), ("RUN echo hi", "FROM"), ("# FROM x\nRUN true", "FROM"),
    ("FROM {theirs}", "cannot be used"),
    ("FROM {image}\nCOPY --from={theirs} / /", "cannot be used"),
    ("FROM {image}\nCOPY --from {theirs} / /", "--from="),
    ("FROM secret:9", "Name the image in full"),
    ("FROM localhost/x@sha256:" + "c" * 64, "Name the image in full"),
    ("ARG B={theirs}\nFROM $B", "$"),
    ("FROM {image}\nCOPY --from=${{B}} / /", "$"),
    ("FROM --platform=linux/amd64 {image}", "FROM takes"),
    ("FROM {image}\nadd https://example.com/a /a", "URL"),
    ("FROM {image}\nADD \\\nhttps://example.com/a /a", "URL"),
    ("FROM {image}\nAD\\\n# a comment\n\nD https://example.com/a /a", "URL"),
    ("FROM {image}\nONBUILD ADD http://example.com/a /a", "ONBUILD"),
    ("# escape=`\nFROM {image}\nADD `\nhttps://example.com/a /a", "directives"),
    ("#syntax=docker/dockerfile:1\nFROM {image}", "directives"),
    ("FROM {image}\nRUN --mount=type=cache,target=/c true", "--mount"),
    ("FROM {image}\nRUN --mount=ty\\\npe=cache,target=/c true", "--mount"),
    ("FROM {image}\nRUN --network=host true", "--network"),
    ("FROM {image}\r\nRUN --mount=ty\\\r\npe=cache,target=/c true", "--mount"),
])
def test_a_containerfile_is_checked_instruction_by_instruction(ctx, text, message):
    text = text.format(theirs=own(renter("rita")).reference, image=IMAGE)
    with pytest.raises(images.ImageError) as refused:
        images.check_containerfile(renter(), text)
    assert message in refused.value.errors["containerfile"]


def test_a_good_containerfile_passes_with_its_line_ends_made_plain(ctx):
    mine = own(renter(), "base")
    text = (f"FROM {IMAGE} AS tools\r\nRUN echo a \\\r\n  && echo b\r\n"
            f"FROM {mine.reference}\nCOPY --from=tools /bin/busybox /b\nCOPY --from=0 / /x\n"
            "# a comment: ADD is fine here\nENV A=$HOME")
    assert images.check_containerfile(renter(), text) == text.replace("\r\n", "\n")


def test_delete_only_your_own_unused_image(ctx):
    user = renter()
    lab, shared_one = own(user, "lab", jupyter=True), preset()
    with pytest.raises(images.ImageError, match="Presets"):
        images.delete_image(user, shared_one)
    notebook = notebooks.create_notebook(user, "lab", lab.reference, "1 TPU", "default",
                                         start=False)
    with pytest.raises(images.ImageError, match="in use by lab"):
        images.delete_image(user, lab)
    notebooks.delete_notebook(notebook)
    images.delete_image(user, lab)  # the nodes' sockets do not answer: the row goes anyway
    assert not Image.select().where(Image.id == lab.id).exists()


def test_a_running_task_holds_its_image(ctx):
    user = renter()
    mine = own(user, "train")
    task = shared.submit(image=mine.reference)
    with pytest.raises(images.ImageError, match="in use by train"):
        images.delete_image(user, mine)
    set_state(task, "succeeded")
    images.delete_image(user, mine)


def test_only_a_running_notebook_can_be_saved(ctx):
    lab = preset("JupyterLab", "localhost/hourglass-jupyter:latest", jupyter=True)
    notebook = notebooks.create_notebook(renter(), "lab", lab.reference, "1 TPU", "default",
                                         start=False)
    with pytest.raises(images.ImageError, match="running"):
        images.save_notebook(renter(), notebook, "saved")
    assert Image.select().count() == 1


def test_presets_discovery_found_are_offered(ctx):
    # test_tasks's node "box" holds IMAGE; the app's presets name it only if it is the probe
    # image, so offer one that a node holds: the JupyterLab image, once discovery finds it.
    from portal.models import Node
    lab = ctx.config["JUPYTER_IMAGE"]
    assert lab not in [r for r, _n in images.choices(renter(), jupyter=True)]
    Node.update(images=json.dumps([IMAGE, lab])).where(Node.name == "box").execute()
    assert [r for r, _n in images.choices(renter(), jupyter=True)] == [lab]
    assert Image.get(Image.reference == lab).user is None
    images.choices(renter())
    assert Image.select().where(Image.reference == lab).count() == 1


# --- pages and API -------------------------------------------------------------------------


@pytest.fixture
def rene(client, world):
    login(client, "renter", "rene", PASSWORD)
    return client


def test_the_images_page_lists_nodes_presets_and_forms(rene, app):
    with app.app_context():
        own(renter(), "<b>mine</b>")
    page = rene.get("/renter/images").get_data(as_text=True)
    assert 'id="new"' in page and "&lt;b&gt;mine&lt;/b&gt;" in page
    assert 'data-node="box"' in page and "localhost/train:1" in page
    assert 'data-upload="upload"' in page and "<progress" in page
    with app.app_context():  # the busybox preset: the box node holds it
        assert Image.get(Image.reference == "localhost/hourglass-probe:latest") \
            if "localhost/hourglass-probe:latest" in page else True


def test_another_renters_image_is_404_by_page_and_api(rene, app):
    with app.app_context():
        theirs = own(renter("rita"), "theirs")
    assert rene.get(f"/renter/images/{theirs.id}").status_code == 404
    assert rene.get(f"/api/v1/images/{theirs.id}").status_code == 404
    token = csrf_token(rene, "/renter/images")
    assert rene.post(f"/renter/images/{theirs.id}/delete",
                     data={"csrf_token": token}).status_code == 404
    assert rene.delete(f"/api/v1/images/{theirs.id}",
                       headers={"X-CSRFToken": token}).status_code == 404
    with app.app_context():
        assert Image.select().where(Image.id == theirs.id).exists()


def test_another_renters_notebook_cannot_be_saved_and_posts_need_csrf(rene, app):
    with app.app_context():
        theirs = notebooks.create_notebook(renter("rita"), "hers", IMAGE, "1 TPU", "default",
                                           start=False)
        mine = own(renter(), "mine")
    token = csrf_token(rene, "/renter/images")
    assert rene.post(f"/renter/notebooks/{theirs.id}/image",
                     data={"csrf_token": token, "name": "x"}).status_code == 404
    assert rene.post(f"/api/v1/notebooks/{theirs.id}/image", json={"name": "x"},
                     headers={"X-CSRFToken": token}).status_code == 404
    assert rene.post(f"/renter/images/{mine.id}/delete").status_code == 400
    with app.app_context():
        assert Image.select().where(Image.id == mine.id).exists()
        assert Image.select().count() == 1


def test_an_image_page_shows_its_log_and_the_api_its_lines_after_n(rene, app):
    with app.app_context():
        image = own(renter(), "built")
        Image.update(log="STEP 1/2: FROM x\n<script>hi</script>").where(
            Image.id == image.id).execute()
    page = rene.get(f"/renter/images/{image.id}").get_data(as_text=True)
    assert "STEP 1/2" in page and "&lt;script&gt;hi" in page
    got = rene.get(f"/api/v1/images/{image.id}?after=1").get_json()
    assert got["running"] is False and got["last_line"] == 2
    assert [line["text"] for line in got["lines"]] == ["<script>hi</script>"]
    listed = rene.get("/api/v1/images").get_json()
    assert [i["name"] for i in listed] == ["built"]


def test_delete_by_page_and_api_is_guarded(rene, app):
    with app.app_context():
        lab = preset("JupyterLab", "localhost/hourglass-jupyter:latest", jupyter=True)
        mine = own(renter(), "gone")
    token = csrf_token(rene, "/renter/images")
    refused = rene.delete(f"/api/v1/images/{lab.id}", headers={"X-CSRFToken": token})
    assert refused.status_code == 409 and "Presets" in refused.get_json()["error"]["message"]
    answer = rene.post(f"/renter/images/{mine.id}/delete", data={"csrf_token": token})
    assert answer.status_code == 303
    with app.app_context():
        assert not Image.select().where(Image.id == mine.id).exists()


def test_a_build_with_a_bad_containerfile_is_refused_with_its_message(rene, app):
    token = csrf_token(rene, "/renter/images")
    page = rene.post("/renter/images/build", data={"csrf_token": token, "build-name": "x",
                                                   "build-containerfile": "RUN true"})
    assert page.status_code == 400 and "FROM" in page.get_data(as_text=True)
    api = rene.post("/api/v1/images/build", json={"name": "x", "containerfile": "RUN true"},
                    headers={"X-CSRFToken": token})
    assert api.status_code == 409 and "containerfile" in api.get_json()["error"]["fields"]
    with app.app_context():
        assert Image.select().count() == 0


def test_an_upload_that_is_not_yours_or_not_there_adds_nothing(rene, app):
    token = csrf_token(rene, "/renter/images")
    page = rene.post("/renter/images/upload", data={"csrf_token": token, "name": "x",
                                                    "upload": "no-such-key"})
    assert page.status_code == 400
    api = rene.post("/api/v1/images/upload", json={"name": "x", "upload": "no-such-key"},
                    headers={"X-CSRFToken": token})
    assert api.status_code in (404, 409)
    with app.app_context():
        assert Image.select().count() == 0


# --- archives ------------------------------------------------------------------------------


def _archive(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_an_archive_gets_our_name_only(tmp_path):
    manifest = json.dumps([{"Config": "c.json", "RepoTags": ["localhost/hourglass-jupyter:latest"],
                            "Layers": ["l.tar"]}]).encode()
    source = _archive(tmp_path / "in.tar", {"manifest.json": manifest, "repositories": b"{}",
                                            "c.json": b"{}", "l.tar": b"layer"})
    rename_archive(source, tmp_path / "out.tar", "localhost/hourglass/u1/x:1")
    with tarfile.open(tmp_path / "out.tar") as tar:
        assert sorted(tar.getnames()) == ["c.json", "l.tar", "manifest.json"]
        assert json.load(tar.extractfile("manifest.json"))[0]["RepoTags"] == \
            ["localhost/hourglass/u1/x:1"]
        assert tar.extractfile("l.tar").read() == b"layer"
    index = json.dumps({"manifests": [{"digest": "d", "annotations": {
        "org.opencontainers.image.ref.name": "evil:1"}}]}).encode()
    rename_archive(_archive(tmp_path / "oci.tar", {"index.json": index}), tmp_path / "o.tar",
                   "localhost/hourglass/u1/y:2")
    with tarfile.open(tmp_path / "o.tar") as tar:
        found = json.load(tar.extractfile("index.json"))["manifests"][0]["annotations"]
    assert found["org.opencontainers.image.ref.name"] == "localhost/hourglass/u1/y:2"


@pytest.mark.parametrize("names", [
    ["./manifest.json"], ["manifest.json", "./manifest.json"], ["/manifest.json"],
    ["manifest.json", "a//b"], ["manifest.json", "../x"], ["manifest.json", "a/../index.json"],
    ["manifest.json", "manifest.json"],
])
def test_an_archive_whose_member_names_the_engine_would_clean_is_refused(tmp_path, names):
    # The engine's loader reads ./manifest.json as manifest.json: its RepoTags would name
    # (and so retag) a preset.
    manifest = json.dumps([{"Config": "c.json", "RepoTags": ["localhost/hourglass-jupyter:latest"],
                            "Layers": []}]).encode()
    source = tmp_path / "in.tar"
    with tarfile.open(source, "w") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = len(manifest)
            tar.addfile(info, io.BytesIO(manifest))
    with pytest.raises(ArchiveError):
        rename_archive(source, tmp_path / "out.tar", "localhost/hourglass/u1/x:1")


@pytest.mark.parametrize("members", [
    {"other.txt": b"x"},
    {"manifest.json": b"not json"},
    {"manifest.json": json.dumps([{"RepoTags": []}, {"RepoTags": []}]).encode()},
])
def test_what_is_not_an_archive_of_one_image_is_refused(tmp_path, members):
    with pytest.raises(ArchiveError):
        rename_archive(_archive(tmp_path / "in.tar", members), tmp_path / "out.tar", "a:1")
    (tmp_path / "junk").write_bytes(b"not a tar")
    with pytest.raises(ArchiveError):
        rename_archive(tmp_path / "junk", tmp_path / "out2.tar", "a:1")


def test_the_page_shows_no_other_renters_image_names(rene, app):
    from portal.models import Node
    with app.app_context():
        mine, theirs = own(renter(), "mine"), own(renter("rita"), "secret")
        Node.update(images=json.dumps([IMAGE, mine.reference, theirs.reference,
                                       theirs.reference.upper().replace("/U", "/u")])).where(
            Node.name == "box").execute()
    page = rene.get("/renter/images").get_data(as_text=True)
    assert IMAGE in page and mine.reference in page
    assert "secret" not in page.lower()


def test_rows_left_busy_by_an_ended_process_are_failed(ctx, tmp_path):
    from datetime import timedelta

    from portal.models import utcnow
    from scheduler.renter_images import STALE_REASON, RenterImages
    engine = RenterImages("unix:///nowhere.sock", tmp_path / "c.conf", build_seconds=60)
    old = utcnow() - timedelta(seconds=2 * 60 + 601)
    rows = {state: own(renter(), state, state=state) for state in ("pending", "building",
                                                                    "ready")}
    recent = own(renter(), "recent", state="building")
    Image.update(created_at=old).where(Image.id != recent.id).execute()
    assert engine.fail_stale() == 2
    assert [(i.name, i.state) for i in Image.select().order_by(Image.id)] == [
        ("pending", "failed"), ("building", "failed"), ("ready", "ready"),
        ("recent", "building")]
    assert Image.get_by_id(rows["pending"].id).reason == STALE_REASON


def test_image_sizes_ask_each_podman_once_and_a_silent_one_gives_none(tmp_path):
    """Slurm's nodes may share one Podman: it is asked once. A socket nobody listens on is a
    node that does not answer."""
    from scheduler.renter_images import RenterImages

    quiet, other = f"unix://{tmp_path / 'quiet.sock'}", f"unix://{tmp_path / 'other.sock'}"
    engine = RenterImages("unix:///unused.sock", tmp_path / "containers.conf")
    assert engine.node_sizes([quiet, quiet, other]) == {quiet: None, other: None}
    assert engine.node_sizes([]) == {}
