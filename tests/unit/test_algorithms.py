"""Algorithms: versioned folders (``portal.versions``, ``portal.storage``), the rules
(``portal.algorithms``), the pickers of tasks and notebooks (``portal.task_input``,
``portal.notebooks``), the renter's pages and the JSON API; who may; deleting what is used.

The world (pools, nodes, specs, renters rene and rita) is the one of ``test_tasks``.
Archives arrive as the browser sends them: a real restartable upload (``portal.uploads``)
of a real zip or tar file.
"""

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from werkzeug.exceptions import NotFound

from portal import algorithms, notebook_folders, notebooks, storage, uploads, versions
from portal.models import Algorithm, AlgorithmVersion, Notebook, Task, Upload, User
from portal.tokens import create_token
from portal.versions import VersionError
from tests.conftest import PASSWORD
from tests.support import csrf_token, login
from tests.unit import test_tasks as shared
from tests.unit.test_tasks import IMAGE, set_state

world = shared.world


ctx, renter = shared.ctx, shared.renter


def zip_bytes(members):
    """A zip holding ``members`` ({name: bytes})."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def tar_bytes(members):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def uploaded(user, filename, data):
    """The key of a finished upload of ``data`` by ``user`` (as upload.js sends it)."""
    upload = uploads.create(user, filename, len(data))
    uploads.append(upload, 0, io.BytesIO(data))
    return upload.key


CODE = {"hello.txt": b"hello from v1\n", "src/train.py": b"print('train')\n"}


def code_version(user=None, name="mnist", members=None):
    """A new algorithm of ``user`` (rene) with version 1 holding ``members``: its version."""
    user = user or renter()
    made = algorithms.create_algorithm(user, name, "", uploaded(user, "code.zip",
                                                                 zip_bytes(members or CODE)))
    return versions.latest(made)


def errors_of(call, *args, **kwargs):
    with pytest.raises(VersionError) as info:
        call(*args, **kwargs)
    return info.value.errors


def data(app):
    return app.config["DATA_ROOT"]


# --- folders -----------------------------------------------------------------------------


def test_version_folders_are_made_of_ids_and_numbers(tmp_path):
    assert storage.version_folder(tmp_path, "algorithms", 3, 2) == tmp_path / "algorithms/3/2"
    assert storage.version_folder(tmp_path, "datasets", 3) == tmp_path / "datasets/3"
    for kind, owner, number in (("users", 1, 1), ("../x", 1, 1), ("algorithms", 0, 1),
                                ("algorithms", "1", 1), ("algorithms", 1, 0),
                                ("algorithms", True, 1), ("datasets", 1, "../2")):
        with pytest.raises(ValueError):
            storage.version_folder(tmp_path, kind, owner, number)
    with pytest.raises(ValueError):
        storage.user_folder(tmp_path, 1, "algorithms", "x")  # not a user folder any more


# --- the rules ---------------------------------------------------------------------------


def test_an_empty_algorithm_has_an_empty_version_1(ctx):
    made = algorithms.create_algorithm(renter(), "  <b>空</b>  ", "what it does")
    assert (made.name, made.description) == ("<b>空</b>", "what it does")
    [version] = versions.versions(made)
    assert (version.number, version.size_bytes, version.file_count) == (1, 0, 0)
    folder = versions.folder(version)
    assert folder == storage.version_folder(data(ctx), "algorithms", made.id, 1)
    assert folder.is_dir() and list(folder.iterdir()) == []
    if os.geteuid() == 0:
        assert (os.stat(folder).st_uid, os.stat(folder).st_gid) == (1000, 1000)


@pytest.mark.parametrize("filename, pack", [("code.zip", zip_bytes), ("code.tar.gz", tar_bytes)])
def test_an_uploaded_archive_becomes_version_1_and_the_upload_goes(ctx, filename, pack):
    user = renter()
    key = uploaded(user, filename, pack(CODE))
    made = algorithms.create_algorithm(user, "mnist", "", key, "first")
    version = versions.latest(made)
    folder = versions.folder(version)
    assert (folder / "hello.txt").read_bytes() == CODE["hello.txt"]
    assert (folder / "src" / "train.py").read_bytes() == CODE["src/train.py"]
    assert (version.note, version.file_count, version.size_bytes) == (
        "first", 2, sum(map(len, CODE.values())))
    assert Upload.select().count() == 0 and not list(uploads.folder().iterdir())
    assert sorted(p.name for p in folder.parent.iterdir()) == ["1"]  # no staging left


def test_a_new_version_is_numbered_next_and_listed_first(ctx):
    first = code_version()
    algorithm = first.algorithm
    second = algorithms.new_version(algorithm, uploaded(renter(), "v2.tar.gz",
                                                        tar_bytes({"hello.txt": b"v2"})), "two")
    assert second.number == 2
    assert [v.number for v in versions.versions(algorithm)] == [2, 1]
    assert (versions.folder(second) / "hello.txt").read_bytes() == b"v2"
    assert (versions.folder(first) / "hello.txt").read_bytes() == CODE["hello.txt"]


@pytest.mark.parametrize("members", [{"../evil.txt": b"x"}, {"/etc/evil": b"x"}])
def test_an_unsafe_archive_is_refused_and_nothing_is_kept(ctx, members):
    user = renter()
    errors = errors_of(algorithms.create_algorithm, user, "bad", "",
                       uploaded(user, "bad.zip", zip_bytes(members)))
    assert list(errors) == ["upload"] and "outside its folder" in errors["upload"]
    assert Algorithm.select().count() == 0 and AlgorithmVersion.select().count() == 0
    root = Path(data(ctx)) / "algorithms"
    assert [p for p in root.rglob("*") if not p.is_dir()] == []


def test_names_are_checked_and_unique_per_renter(ctx):
    code_version(name="mnist")
    assert errors_of(algorithms.create_algorithm, renter(), "mnist") == {
        "name": "You have an algorithm named 'mnist' already."}
    assert "name" in errors_of(algorithms.create_algorithm, renter(), "a\u202eb")
    assert "name" in errors_of(algorithms.create_algorithm, renter(), "")
    assert "note" in errors_of(algorithms.create_algorithm, renter(), "ok", note="a\x00b")
    assert code_version(renter("rita"), name="mnist").algorithm.user_id == renter("rita").id


def test_an_upload_of_someone_else_or_unfinished_is_refused(ctx):
    rita = renter("rita")
    key = uploaded(rita, "code.zip", zip_bytes(CODE))
    assert "upload" in errors_of(algorithms.create_algorithm, renter(), "mine", "", key)
    half = uploads.create(renter(), "half.zip", 100)
    uploads.append(half, 0, io.BytesIO(b"x" * 10))
    errors = errors_of(algorithms.create_algorithm, renter(), "half", "", half.key)
    assert "not complete" in errors["upload"]
    assert Algorithm.select().count() == 0


# --- tasks and notebooks pick a version --------------------------------------------------


def test_a_task_keeps_its_version_and_runs_again_with_it(ctx):
    version = code_version()
    task = shared.submit(algorithm_version=version.id)
    assert Task.get_by_id(task.id).algorithm_version_id == version.id
    set_state(task, "succeeded")
    again = shared.tasks.rerun(task)
    assert again.algorithm_version_id == version.id


def test_a_task_may_not_pick_another_renters_version(ctx):
    theirs = code_version(renter("rita"))
    for value in (theirs.id, 999999, "x", 0):
        assert shared.errors_of(shared.submit, algorithm_version=value) == {
            "algorithm_version": "Choose a version of one of your algorithms."}


def test_a_used_version_is_not_deleted(ctx):
    version = code_version()
    task = shared.submit(algorithm_version=version.id)
    message = "Used by 1 task that has not ended."
    assert errors_of(versions.delete_version, version) == {None: message}
    assert errors_of(algorithms.delete_algorithm, version.algorithm) == {None: message}
    set_state(task, "stopped")
    notebook = notebooks.create_notebook(renter(), "lab", IMAGE, "1 TPU", "default",
                                         algorithm_version=version.id, start=False)
    assert errors_of(versions.delete_version, version) == {None: "Used by 1 notebook."}
    notebooks.delete_notebook(notebook)
    folder = versions.folder(version)
    algorithms.delete_algorithm(version.algorithm)
    assert not folder.exists() and AlgorithmVersion.select().count() == 0
    assert Task.get_by_id(task.id).algorithm_version_id is None  # the ended task stays


def test_a_notebook_gets_a_working_copy_and_saves_it_as_a_new_version(ctx):
    version = code_version()
    notebook = notebooks.create_notebook(renter(), "lab", IMAGE, "1 TPU", "default",
                                         algorithm_version=version.id, start=False)
    own = notebook_folders.code_folder(data(ctx), notebook)
    assert (own / "hello.txt").read_bytes() == CODE["hello.txt"]
    (own / "hello.txt").write_text("edited")
    (own / "new.py").write_text("x = 1")
    assert (versions.folder(version) / "hello.txt").read_bytes() == CODE["hello.txt"]
    second = algorithms.save_notebook_code(notebook, version.algorithm_id, note="edited")
    assert (second.number, second.note, second.file_count) == (2, "edited", 3)
    assert (versions.folder(second) / "hello.txt").read_text() == "edited"
    fresh = algorithms.save_notebook_code(notebook, None, "from the lab")
    assert (fresh.number, fresh.algorithm.name) == (1, "from the lab")
    assert (versions.folder(fresh) / "new.py").read_text() == "x = 1"
    theirs = code_version(renter("rita"), name="theirs")
    for other in (theirs.algorithm_id, 2**100, True):  # 2**100: no row, and no 500 either
        assert errors_of(algorithms.save_notebook_code, notebook, other) == {
            "algorithm": "Choose one of your algorithms."}
    assert "name" in errors_of(algorithms.save_notebook_code, notebook, None, "mnist")


def test_versions_are_mounted_read_only(ctx):
    version = code_version()
    assert versions.mounts("/data", version) == [
        (f"/data/algorithms/{version.algorithm_id}/1", "/code", True)]
    assert versions.mounts("/data") == []


def test_another_renters_algorithm_is_not_found(ctx):
    version = code_version()
    for user, algorithm_id in ((renter("rita"), version.algorithm_id),
                               (renter(), version.algorithm_id + 1), (renter(), 0)):
        with pytest.raises(NotFound):
            algorithms.get_algorithm_or_404(user, algorithm_id)
    assert algorithms.usable_version(renter("rita"), version.id) is None
    assert algorithms.version_choices(renter("rita")) == []


# --- pages -------------------------------------------------------------------------------


rene, text = shared.rene, shared.text


def post(client, path, **fields):
    return client.post(path, data={"csrf_token": csrf_token(client, "/renter/algorithms"),
                                   **fields})


def made_in(app, **kwargs):
    with app.app_context():
        version = code_version(**kwargs)
        return version.algorithm_id, version.id


def test_the_list_page_has_its_create_form_and_creates_from_an_upload(rene, app):
    page = text(rene.get("/renter/algorithms"))
    assert 'id="new"' in page and "No algorithms yet." in page and "not built yet" not in page
    with app.app_context():
        key = uploaded(renter(), "code.zip", zip_bytes(CODE))
    response = post(rene, "/renter/algorithms", name="<i>mnist</i>", description="d",
                    note="n", upload=key)
    assert response.status_code == 303
    page = text(rene.get(response.headers["Location"]))
    assert "&lt;i&gt;mnist&lt;/i&gt;" in page and "<i>mnist</i>" not in page
    assert 'data-version="1"' in page and "2 files" in page
    assert "&lt;i&gt;mnist&lt;/i&gt;" in text(rene.get("/renter/algorithms"))


def test_a_refused_form_shows_its_messages(rene, app):
    made_in(app)
    response = post(rene, "/renter/algorithms", name="mnist", upload="no-such-upload")
    assert response.status_code == 400
    assert "You have an algorithm named" in text(response)
    response = post(rene, "/renter/algorithms", name="other", upload="no-such-upload")
    assert response.status_code == 400 and "no such upload" in text(response)
    with app.app_context():
        assert Algorithm.select().count() == 1


def test_browse_view_and_download_a_version(rene, app):
    algorithm_id, _version_id = made_in(app)
    base = f"/renter/algorithms/{algorithm_id}/versions/1/files"
    listing = text(rene.get(base))
    assert "hello.txt" in listing and "src" in listing
    assert "hello from v1" in text(rene.get(f"{base}/hello.txt"))
    one = rene.get(f"{base}/src/train.py?download=1")
    assert one.status_code == 200 and one.data == CODE["src/train.py"]
    whole = rene.get(f"{base}?download=1")
    with tarfile.open(fileobj=io.BytesIO(whole.data), mode="r:gz") as archive:
        names = archive.getnames()
    assert any(name.endswith("hello.txt") for name in names)
    for bad in ("../../../etc/passwd", "..", "nope.txt"):
        assert rene.get(f"{base}/{bad}").status_code == 404, bad


def test_new_version_and_guarded_deletes_from_the_pages(rene, app):
    algorithm_id, version_id = made_in(app)
    with app.app_context():
        key = uploaded(renter(), "v2.zip", zip_bytes({"a.txt": b"a"}))
        task = shared.submit(algorithm_version=version_id)
    url = f"/renter/algorithms/{algorithm_id}"
    assert post(rene, f"{url}/versions", upload=key, note="two").status_code == 303
    assert 'data-version="2"' in text(rene.get(url))
    post(rene, f"{url}/versions/1/delete")
    assert "Used by 1 task that has not ended." in text(rene.get(url))
    post(rene, f"{url}/delete")
    assert "Used by 1 task" in text(rene.get(url))
    with app.app_context():
        set_state(task, "succeeded")
    assert post(rene, f"{url}/versions/1/delete").status_code == 303
    assert post(rene, f"{url}/delete").headers["Location"].endswith("/renter/algorithms")
    assert rene.get(url).status_code == 404


def test_the_task_and_notebook_forms_offer_versions_grouped_by_algorithm(rene, app):
    _algorithm_id, version_id = made_in(app, name="mnist")
    made_in(app, name="other")
    with app.app_context():
        code_version(renter("rita"), name="ritas")
    for path in ("/renter/tasks/new", "/renter/notebooks/new"):
        page = text(rene.get(path))
        assert '<optgroup label="mnist">' in page and '<optgroup label="other">' in page
        assert f'<option value="{version_id}">v1 · ' in page and "ritas" not in page


def test_the_task_form_submits_a_version_and_the_task_page_shows_it(rene, app):
    _algorithm_id, version_id = made_in(app)
    fields = {"name": "t", "image": IMAGE, "command": "cat\n/code/hello.txt", "env": "",
              "pool": "default", "subtasks-0-role": "worker", "subtasks-0-spec": "1 TPU",
              "subtasks-0-replicas": "1", "algorithm_version": str(version_id),
              "dataset_version": ""}
    response = rene.post("/renter/tasks", data={
        "csrf_token": csrf_token(rene, "/renter/tasks/new"), **fields})
    assert response.status_code == 303, text(response)
    page = text(rene.get(response.headers["Location"]))
    assert f'data-version="{version_id}">mnist v1</a>' in page
    bad = rene.post("/renter/tasks", data={"csrf_token": csrf_token(rene, "/renter/tasks/new"),
                                           **fields, "algorithm_version": "999999"})
    assert bad.status_code == 400 and "Choose a version of one of your algorithms." in text(bad)


def test_save_code_from_the_notebook_page(rene, app):
    _algorithm_id, version_id = made_in(app)
    with app.app_context():
        notebook = notebooks.create_notebook(renter(), "lab", IMAGE, "1 TPU", "default",
                                             algorithm_version=version_id, start=False)
    page = text(rene.get(f"/renter/notebooks/{notebook.id}"))
    assert 'id="save-code"' in page and "mnist v1" in page
    response = post(rene, f"/renter/notebooks/{notebook.id}/save-code", algorithm="",
                    name="saved", note="n")
    assert response.status_code == 303
    assert 'data-version="1"' in text(rene.get(response.headers["Location"]))
    post(rene, f"/renter/notebooks/{notebook.id}/save-code", algorithm="x", name="")
    assert "Choose one of your algorithms." in text(rene.get(f"/renter/notebooks/{notebook.id}"))


def algorithm_urls(algorithm_id):
    base = f"/renter/algorithms/{algorithm_id}"
    api = f"/api/v1/algorithms/{algorithm_id}"
    return [("GET", base), ("POST", f"{base}/versions"), ("POST", f"{base}/delete"),
            ("POST", f"{base}/versions/1/delete"), ("GET", f"{base}/versions/1/files"),
            ("GET", f"{base}/versions/1/files/hello.txt"),
            ("GET", f"{base}/versions/1/files?download=1"),
            ("GET", api), ("DELETE", api), ("GET", f"{api}/versions"),
            ("POST", f"{api}/versions"), ("DELETE", f"{api}/versions/1")]


def test_another_renter_gets_404_for_every_algorithm_url(client, world, app):
    algorithm_id, _version_id = made_in(app)
    with app.app_context():
        notebook = notebooks.create_notebook(renter(), "lab", IMAGE, "1 TPU", "default",
                                             start=False)
    login(client, "renter", "rita", PASSWORD)
    token = csrf_token(client, "/renter/algorithms")
    urls = algorithm_urls(algorithm_id) + [
        ("POST", f"/renter/notebooks/{notebook.id}/save-code"),
        ("POST", f"/api/v1/notebooks/{notebook.id}/save-code")]
    for method, path in urls:
        api = path.startswith("/api")
        response = client.open(path, method=method, headers={"X-CSRFToken": token},
                               json={} if api and method == "POST" else None,
                               data=None if api else {"csrf_token": token})
        assert response.status_code == 404, (method, path)
    assert client.get("/api/v1/algorithms").json == []
    with app.app_context():
        assert AlgorithmVersion.select().count() == 1 and Algorithm.select().count() == 1


# --- the JSON API ------------------------------------------------------------------------


@pytest.fixture
def tokens(app, world):
    with app.app_context():
        return {user.name: {"Authorization": f"Bearer {create_token(user, 'test')[1]}"}
                for user in User.select()}


def test_the_api_creates_lists_adds_versions_and_deletes(client, app, tokens):
    rene = tokens["rene"]
    with app.app_context():
        key = uploaded(renter(), "code.zip", zip_bytes(CODE))
    response = client.post("/api/v1/algorithms", json={"name": "mnist", "upload": key,
                                                       "note": "one"}, headers=rene)
    assert response.status_code == 201, response.json
    made = response.json
    assert [(v["number"], v["note"], v["file_count"]) for v in made["versions"]] == [
        (1, "one", 2)]
    url = f"/api/v1/algorithms/{made['id']}"
    assert client.get(url, headers=rene).json == made
    assert client.get("/api/v1/algorithms", headers=rene).json == [made]
    empty = client.post(f"{url}/versions", json={"note": "blank"}, headers=rene)
    assert empty.status_code == 201 and empty.json["number"] == 2
    assert [v["number"] for v in client.get(f"{url}/versions", headers=rene).json] == [2, 1]
    task = client.post("/api/v1/tasks", headers=rene, json={
        "name": "t", "image": IMAGE, "argv": ["ls"], "pool": "default",
        "subtasks": [{"role": "w", "spec": "1 TPU", "replicas": 1}],
        "algorithm_version": empty.json["id"]})
    assert task.status_code == 201 and task.json["algorithm_version"] == empty.json["id"]
    refused = client.delete(f"{url}/versions/2", headers=rene)
    assert refused.status_code == 409 and "Used by 1 task" in refused.json["error"]["message"]
    assert client.delete(f"{url}/versions/1", headers=rene).status_code == 204
    assert client.delete(url, headers=rene).status_code == 409
    with app.app_context():
        set_state(Task.get_by_id(task.json["id"]), "stopped")
    assert client.delete(url, headers=rene).status_code == 204
    assert client.get(url, headers=rene).status_code == 404


@pytest.mark.parametrize("body, status, field", [
    ({"name": ""}, 400, "name"),
    ({"name": "x", "upload": "../x"}, 400, "upload"),
    ({"name": "x", "upload": "no-such"}, 409, "upload"),
    ({"name": "x", "extra": 1}, 400, "extra"),
    ({"name": "x", "note": "a\x00"}, 400, "note"),
])
def test_the_api_refuses_bad_bodies(client, app, tokens, body, status, field):
    response = client.post("/api/v1/algorithms", json=body, headers=tokens["rene"])
    assert response.status_code == status and field in response.json["error"]["fields"]


def test_the_api_saves_a_notebooks_code(client, app, tokens):
    with app.app_context():
        version = code_version()
        notebook = notebooks.create_notebook(renter(), "lab", IMAGE, "1 TPU", "default",
                                             algorithm_version=version.id, start=False)
    saved = client.post(f"/api/v1/notebooks/{notebook.id}/save-code", headers=tokens["rene"],
                        json={"algorithm": version.algorithm_id, "note": "again"})
    assert saved.status_code == 201 and (saved.json["number"], saved.json["note"]) == (
        2, "again")
    with app.app_context():
        assert Notebook.get_by_id(notebook.id).algorithm_version_id == version.id
