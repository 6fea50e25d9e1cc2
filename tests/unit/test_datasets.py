"""Datasets: versions from uploaded files and archives (``portal.datasets``,
``portal.versions``), sharing with groups, the pickers, the renter's pages and the JSON
API; who may read, who may change; deleting what is used.

The world is the one of ``test_tasks``; rene and rita are renters, and ``team`` is a group
both are in (sal is in it too; nobody else is).
"""

import os
from pathlib import Path

import pytest
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import Forbidden, NotFound

from portal import datasets, notebook_folders, notebooks, storage, task_input, versions
from portal.models import Dataset, DatasetVersion, Group, Membership, Task, User
from portal.tokens import create_token
from portal.users import create_user
from portal.versions import VersionError
from tests.conftest import PASSWORD
from tests.support import csrf_token, fund, login
from tests.unit import test_tasks as shared
from tests.unit.test_algorithms import tar_bytes, uploaded, zip_bytes
from tests.unit.test_tasks import IMAGE, set_state

world = shared.world


def renter(name="rene"):
    return User.get(User.name == name)


@pytest.fixture
def team(app, world):
    """Group ``team`` with rene and rita in it; renter ``sam`` in no group."""
    with app.app_context():
        group = Group.create(name="team")
        for name in ("rene", "rita"):
            Membership.create(user=renter(name), group=group)
        fund(create_user("sam", "renter", PASSWORD))
        return group.id


@pytest.fixture
def ctx(app, team):
    with app.app_context():
        yield app


def data_version(user=None, name="digits", files=None):
    """A new dataset of ``user`` (rene) whose version 1 holds ``files`` ({name: bytes},
    uploaded as plain files): its version."""
    user = user or renter()
    keys = [uploaded(user, filename, content)
            for filename, content in (files or {"train.csv": b"1,2,3\n"}).items()]
    return versions.latest(datasets.create_dataset(user, name, "", keys))


def errors_of(call, *args, **kwargs):
    with pytest.raises(VersionError) as info:
        call(*args, **kwargs)
    return info.value.errors


# --- the rules ---------------------------------------------------------------------------


def test_files_are_kept_and_archives_unpacked_in_one_version(ctx):
    user = renter()
    keys = [uploaded(user, "labels.csv", b"a,b\n"),
            uploaded(user, "images.zip", zip_bytes({"img/1.png": b"\x89PNG1"})),
            uploaded(user, "more.tar.gz", tar_bytes({"img/2.png": b"\x89PNG2"})),
            uploaded(user, "raw.bin", b"\x00\x01")]
    made = datasets.create_dataset(user, "digits", "hand-written", keys, "first")
    version = versions.latest(made)
    folder = versions.folder(version)
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "img/1.png", "img/2.png", "labels.csv", "raw.bin"]
    assert (version.file_count, version.size_bytes, version.note) == (4, 4 + 5 + 5 + 2, "first")
    assert folder == storage.version_folder(ctx.config["DATA_ROOT"], "datasets", made.id, 1)


def test_a_file_twice_is_refused_and_nothing_is_kept(ctx):
    user = renter()
    keys = [uploaded(user, "a.csv", b"1"), uploaded(user, "x.zip", zip_bytes({"a.csv": b"2"}))]
    errors = errors_of(datasets.create_dataset, user, "twice", "", keys)
    assert errors == {"upload": "Two files are named 'a.csv'."}
    assert Dataset.select().count() == 0
    root = Path(ctx.config["DATA_ROOT"]) / "datasets"
    assert [p for p in root.rglob("*") if not p.is_dir()] == []


def test_a_new_version_may_start_from_a_copy_of_the_newest(ctx):
    first = data_version()
    dataset = first.dataset
    second = datasets.new_version(dataset, [uploaded(renter(), "more.csv", b"4")], "two",
                                  keep_previous=True)
    folder = versions.folder(second)
    assert sorted(p.name for p in folder.iterdir()) == ["more.csv", "train.csv"]
    assert os.stat(folder / "train.csv").st_nlink == 1  # a copy, not a hard link
    assert os.stat(folder / "train.csv").st_ino != os.stat(
        versions.folder(first) / "train.csv").st_ino
    third = datasets.new_version(dataset, [uploaded(renter(), "only.csv", b"5")])
    assert [p.name for p in versions.folder(third).iterdir()] == ["only.csv"]
    assert errors_of(datasets.new_version, dataset, []) == {
        "upload": "Choose at least one file or archive."}


def test_sharing_lets_group_members_read_but_not_change(ctx, team):
    version = data_version()
    dataset = version.dataset
    rita, sam = renter("rita"), renter("sam")
    assert datasets.usable_version(rita, version.id) is None
    datasets.share(dataset, team)
    datasets.share(dataset, team)  # twice is once
    assert [g.name for g in datasets.shares(dataset)] == ["team"]
    [seen] = datasets.datasets_of(rita)
    assert (seen.id, seen.mine, seen.latest.number) == (dataset.id, False, 1)
    assert datasets.usable_version(rita, version.id).id == version.id
    assert datasets.version_choices(rita)[0][0] == "digits (shared by rene)"
    assert datasets.get_dataset_or_404(rita, dataset.id).id == dataset.id
    with pytest.raises(Forbidden):
        datasets.get_dataset_or_404(rita, dataset.id, change=True)
    for user in (sam, renter("mina")):
        with pytest.raises(NotFound):
            datasets.get_dataset_or_404(user, dataset.id)
    task = shared.submit(rita, dataset_version=version.id)
    assert task.dataset_version_id == version.id
    datasets.unshare(dataset, team)
    assert datasets.datasets_of(rita) == []
    assert shared.errors_of(shared.submit, rita, dataset_version=version.id) == {
        "dataset_version": "Choose a version of a dataset you may use."}
    assert task_input.check_versions(sam, None, None) == {"algorithm_version": None,
                                                          "dataset_version": None}


def test_only_the_owners_groups_may_be_shared_with(ctx, world):
    dataset = data_version().dataset
    assert errors_of(datasets.share, dataset, world["group"]) == {
        "group": "Choose one of your groups."}


def test_a_used_dataset_version_is_not_deleted(ctx):
    version = data_version()
    task = shared.submit(dataset_version=version.id)
    assert errors_of(datasets.delete_dataset, version.dataset) == {
        None: "Used by 1 task that has not ended."}
    set_state(task, "failed")
    notebook = notebooks.create_notebook(renter(), "lab", IMAGE, "1 TPU", "default",
                                         dataset_version=version.id, start=False)
    assert errors_of(versions.delete_version, version) == {None: "Used by 1 notebook."}
    notebooks.delete_notebook(notebook)
    datasets.delete_dataset(version.dataset)
    assert DatasetVersion.select().count() == 0 and not versions.folder(version).exists()
    assert Task.get_by_id(task.id).dataset_version_id is None


def test_a_notebooks_dataset_is_read_only_and_checked_again_at_start(ctx, team):
    version = data_version()
    datasets.share(version.dataset, team)
    notebook = notebooks.create_notebook(renter("rita"), "lab", IMAGE, "1 TPU", "default",
                                         dataset_version=version.id, start=False)
    root = ctx.config["DATA_ROOT"]
    assert notebook_folders.mounts(root, notebook)[1] == (
        str(versions.folder(version, root)), "/dataset", True)
    datasets.unshare(version.dataset, team)
    with pytest.raises(notebooks.NotebookError) as info:
        notebooks.start_notebook(notebook)
    assert "no longer shared" in str(info.value)


# --- pages -------------------------------------------------------------------------------


def text(response):
    return response.get_data(as_text=True)


def post(client, path, fields=(), **more):
    """POST ``more`` plus ``fields`` (pairs: a name may repeat) with the page's token."""
    sent = [("csrf_token", csrf_token(client, "/renter/datasets")), *fields, *more.items()]
    return client.post(path, data=MultiDict(sent))


def test_the_list_page_creates_a_dataset_from_several_files(client, app, team):
    login(client, "renter", "rene", PASSWORD)
    page = text(client.get("/renter/datasets"))
    assert 'id="new"' in page and "No datasets yet." in page
    with app.app_context():
        keys = [uploaded(renter(), "a.csv", b"1"), uploaded(renter(), "b.csv", b"22")]
    response = post(client, "/renter/datasets", [("upload", k) for k in keys],
                    name="digits", description="<script>x</script>", note="n")
    assert response.status_code == 303
    page = text(client.get(response.headers["Location"]))
    assert "2 files" in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert 'id="share-form"' in page and "team" in page
    dataset_id = int(response.headers["Location"].rsplit("/", 1)[1])
    assert post(client, f"/renter/datasets/{dataset_id}/share", group=str(team)).status_code \
        == 303
    assert 'data-group="' in text(client.get(f"/renter/datasets/{dataset_id}"))
    bad = post(client, "/renter/datasets", name="digits")
    assert bad.status_code == 400 and "You have a dataset named" in text(bad)


def test_a_member_sees_a_shared_dataset_read_only(client, app, team):
    with app.app_context():
        version = data_version()
        datasets.share(version.dataset, team)
        dataset_id = version.dataset_id
    login(client, "renter", "rita", PASSWORD)
    listing = text(client.get("/renter/datasets"))
    assert "shared by rene" in listing and f'data-dataset="{dataset_id}"' in listing
    page = text(client.get(f"/renter/datasets/{dataset_id}"))
    assert 'id="new-version"' not in page and 'id="delete-dataset"' not in page
    base = f"/renter/datasets/{dataset_id}/versions/1/files"
    assert "1,2,3" in text(client.get(f"{base}/train.csv"))
    assert client.get(f"{base}/train.csv?download=1").data == b"1,2,3\n"
    for path in (f"/renter/datasets/{dataset_id}/delete", f"/renter/datasets/{dataset_id}/share",
                 f"/renter/datasets/{dataset_id}/versions",
                 f"/renter/datasets/{dataset_id}/versions/1/delete"):
        assert post(client, path, group=str(team)).status_code == 403, path
    form = text(client.get("/renter/tasks/new"))
    assert '<optgroup label="digits (shared by rene)">' in form
    with app.app_context():
        assert DatasetVersion.select().count() == 1


def dataset_urls(dataset_id):
    base = f"/renter/datasets/{dataset_id}"
    api = f"/api/v1/datasets/{dataset_id}"
    return [("GET", base), ("POST", f"{base}/versions"), ("POST", f"{base}/delete"),
            ("POST", f"{base}/share"), ("POST", f"{base}/unshare"),
            ("POST", f"{base}/versions/1/delete"), ("GET", f"{base}/versions/1/files"),
            ("GET", f"{base}/versions/1/files/train.csv"),
            ("GET", f"{base}/versions/1/files?download=1"),
            ("GET", api), ("DELETE", api), ("GET", f"{api}/versions"),
            ("POST", f"{api}/versions"), ("DELETE", f"{api}/versions/1"),
            ("POST", f"{api}/shares"), ("DELETE", f"{api}/shares/1")]


def test_a_renter_it_is_not_shared_with_gets_404_everywhere(client, app, team):
    with app.app_context():
        version = data_version()
        datasets.share(version.dataset, team)
    login(client, "renter", "sam", PASSWORD)
    token = csrf_token(client, "/renter/datasets")
    for method, path in dataset_urls(version.dataset_id):
        api = path.startswith("/api")
        response = client.open(path, method=method, headers={"X-CSRFToken": token},
                               json=({"group": 1} if path.endswith("shares") else {})
                               if api and method == "POST" else None,
                               data=None if api else {"csrf_token": token})
        assert response.status_code == 404, (method, path)
    assert client.get("/api/v1/datasets").json == []


# --- the JSON API ------------------------------------------------------------------------


@pytest.fixture
def tokens(app, team):
    with app.app_context():
        return {user.name: {"Authorization": f"Bearer {create_token(user, 'test')[1]}"}
                for user in User.select()}


def test_the_api_creates_shares_versions_and_deletes(client, app, tokens, team):
    rene, rita = tokens["rene"], tokens["rita"]
    with app.app_context():
        keys = [uploaded(renter(), "a.csv", b"1"),
                uploaded(renter(), "b.tar.gz", tar_bytes({"b/b.csv": b"2"}))]
    made = client.post("/api/v1/datasets", headers=rene,
                       json={"name": "digits", "uploads": keys, "description": "d"})
    assert made.status_code == 201, made.json
    dataset = made.json
    assert (dataset["owner"], dataset["mine"], dataset["versions"][0]["file_count"]) == (
        "rene", True, 2)
    url = f"/api/v1/datasets/{dataset['id']}"
    assert client.get(url, headers=rita).status_code == 404
    shared_json = client.post(f"{url}/shares", headers=rene, json={"group": team}).json
    assert shared_json["shared_with"] == [{"id": team, "name": "team"}]
    seen = client.get(url, headers=rita).json
    assert (seen["mine"], seen["shared_with"], seen["owner"]) == (False, [], "rene")
    assert client.delete(url, headers=rita).status_code == 403
    assert client.post(f"{url}/versions", headers=rita, json={}).status_code == 403
    with app.app_context():
        key = uploaded(renter(), "c.csv", b"3")
    added = client.post(f"{url}/versions", headers=rene,
                        json={"uploads": [key], "keep_previous": True, "note": "more"})
    assert added.status_code == 201 and added.json["file_count"] == 3
    task = client.post("/api/v1/tasks", headers=rita, json={
        "name": "t", "image": IMAGE, "argv": ["ls", "/dataset"], "pool": "default",
        "subtasks": [{"role": "w", "spec": "1 TPU", "replicas": 1}],
        "dataset_version": added.json["id"]})
    assert task.status_code == 201 and task.json["dataset_version"] == added.json["id"]
    assert client.delete(url, headers=rene).status_code == 409
    with app.app_context():
        set_state(Task.get_by_id(task.json["id"]), "succeeded")
    assert client.delete(f"{url}/shares/{team}", headers=rene).status_code == 204
    assert client.get(url, headers=rita).status_code == 404
    assert client.delete(url, headers=rene).status_code == 204
    assert client.get("/api/v1/datasets", headers=rene).json == []


@pytest.mark.parametrize("body, status, field", [
    ({"name": "x", "uploads": "k"}, 400, "uploads"),
    ({"name": "x", "uploads": ["../k"]}, 400, "uploads[0]"),
    ({"name": "x", "uploads": ["missing"]}, 409, "upload"),
    ({"name": ""}, 400, "name"),
])
def test_the_api_refuses_bad_bodies(client, tokens, body, status, field):
    response = client.post("/api/v1/datasets", json=body, headers=tokens["rene"])
    assert response.status_code == status and field in response.json["error"]["fields"]
