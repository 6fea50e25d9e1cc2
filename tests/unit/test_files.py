"""A renter's files reached safely (portal.files), and a notebook's folder without a running
container (portal.renter.files): browse, view, download, download as an archive, upload
into it, delete; another renter gets 404."""

import io
import os
import stat
import tarfile
import threading
import zlib

import pytest

from portal import files, notebook_folders, safe_fs
from portal.archives import ArchiveError, Limits, stream_archive
from portal.models import Notebook, Upload, User
from portal.users import create_user
from tests.conftest import PASSWORD
from tests.support import csrf_token, login

# --- portal.files --------------------------------------------------------------------------

ROOMY = Limits(2**30, 1000)


@pytest.fixture
def tree(tmp_path):
    """root/{a.txt, B.txt, sub/{c.bin}, zdir/, link -> /etc, fifo} and a file outside."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "zdir").mkdir()
    (root / "a.txt").write_text("alpha")
    (root / "B.txt").write_text("beta")
    (root / "sub" / "c.bin").write_bytes(b"\0\1\2")
    (root / "link").symlink_to("/etc")
    (root / "sub" / "out").symlink_to(tmp_path / "secret")
    (tmp_path / "secret").write_text("secret")
    os.mkfifo(root / "fifo")
    return root


@pytest.mark.parametrize("relpath", ["..", "../secret", "sub//c.bin", "./a.txt", "sub/.",
                                     "a\x00", "a\nb", "/etc/passwd", "link", "link/passwd",
                                     "sub/out", "fifo", "sub/../../secret"])
def test_entry_refuses_what_could_leave_the_root(tree, relpath):
    with pytest.raises((ValueError, FileNotFoundError)):
        files.entry(tree, relpath)


def test_entry_finds_files_and_folders(tree):
    assert files.entry(tree, "").is_dir and files.entry(tree, "").name == "root"
    found = files.entry(tree, "sub/c.bin")
    assert (found.name, found.relpath, found.is_dir, found.size) == ("c.bin", "sub/c.bin",
                                                                     False, 3)
    with pytest.raises(FileNotFoundError):
        files.entry(tree, "nothing")
    with pytest.raises(FileNotFoundError):
        files.entry(tree / "missing-root", "")
    with pytest.raises(FileNotFoundError):
        files.entry(tree / "link", "")  # a root that is a link


def test_entries_are_folders_first_without_links_or_fifos(tree):
    found = files.entries(tree, "")
    assert [(e.name, e.is_dir, e.size) for e in found] == [
        ("sub", True, 0), ("zdir", True, 0), ("a.txt", False, 5), ("B.txt", False, 4)]
    assert [e.relpath for e in files.entries(tree, "sub")] == ["sub/c.bin"]
    with pytest.raises(NotADirectoryError):
        files.entries(tree, "a.txt")


def test_read_text_is_none_for_binary_and_large_files(tree):
    assert files.read_text(tree, "a.txt") == "alpha"
    assert files.read_text(tree, "sub/c.bin") is None
    (tree / "big.txt").write_text("x" * 101)
    assert files.read_text(tree, "big.txt", limit=100) is None
    (tree / "latin1.txt").write_bytes("café".encode("latin-1"))
    assert files.read_text(tree, "latin1.txt") is None
    with pytest.raises(ValueError):
        files.read_text(tree, "sub/out")  # a link is not followed


def test_stats_count_regular_files_only(tree):
    assert files.stats(tree) == (5 + 4 + 3, 3)


def test_copy_tree_copies_files_and_folders_and_no_links(tree, tmp_path):
    os.link(tree / "a.txt", tree / "hard.txt")
    (tree / "run.sh").write_text("#!/bin/sh\n")
    (tree / "run.sh").chmod(0o4755)
    files.copy_tree(tree, tmp_path / "copy", ROOMY)
    copy = tmp_path / "copy"
    assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*")) == [
        "B.txt", "a.txt", "hard.txt", "run.sh", "sub", "sub/c.bin", "zdir"]
    (copy / "hard.txt").write_text("changed")  # a file of its own, not a hard link
    assert (tree / "a.txt").read_text() == "alpha"
    assert stat.S_IMODE((copy / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((copy / "a.txt").stat().st_mode) == 0o644
    if os.geteuid() == 0:
        assert (copy / "sub").stat().st_uid == 1000
    with pytest.raises(FileExistsError):
        files.copy_tree(tree, copy, ROOMY)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_save_stream_and_move_in_check_the_name_and_replace_files(tree, tmp_path):
    saved = files.save_stream(tree, "zdir", "数据 1.csv", io.BytesIO(b"x" * (3 * 2**20)))
    assert saved.relpath == "zdir/数据 1.csv" and saved.size == 3 * 2**20
    assert (tree / "zdir" / "数据 1.csv").read_bytes() == b"x" * (3 * 2**20)
    assert stat.S_IMODE((tree / "zdir" / "数据 1.csv").stat().st_mode) == 0o644
    for name in ("..", ".", "a/b", "", " a", "a\nb", "\u202ename", "x" * 256, "名" * 86):
        with pytest.raises(ValueError):
            files.save_stream(tree, "", name, io.BytesIO(b"x"))
    with pytest.raises(IsADirectoryError):
        files.save_stream(tree, "", "sub", io.BytesIO(b"x"))
    (tmp_path / "upload.part").write_bytes(b"new")
    files.move_in(tree, "", "a.txt", tmp_path / "upload.part")
    assert (tree / "a.txt").read_text() == "new"
    assert stat.S_IMODE((tree / "a.txt").stat().st_mode) == 0o644
    assert not (tmp_path / "upload.part").exists()
    assert not [p for p in tree.rglob(".*")]  # no temporary file left


def test_remove_deletes_files_only(tree):
    files.remove(tree, "sub/c.bin")
    assert not (tree / "sub" / "c.bin").exists()
    for relpath, error in (("sub", IsADirectoryError), ("", IsADirectoryError),
                           ("link", ValueError), ("../secret", ValueError),
                           ("fifo", ValueError)):
        with pytest.raises(error):
            files.remove(tree, relpath)
    assert (tree.parent / "secret").exists() and (tree / "fifo").exists()


# --- a folder a container changes while we work in it --------------------------------------


@pytest.fixture
def swapped(tmp_path):
    """root/{ok.txt, sub -> outside/} as a container leaves it after ``mv sub sub2; ln -s
    <outside> sub``: outside/ holds secret.txt and a folder, and is never to be touched."""
    outside = tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    (outside / "secret.txt").write_text("secret")
    (outside / "inner" / "key").write_text("key")
    root = tmp_path / "root"
    root.mkdir()
    (root / "ok.txt").write_text("ok")
    (root / "sub").symlink_to(outside)
    return root, outside


def _untouched(outside):
    assert sorted(p.relative_to(outside).as_posix() for p in outside.rglob("*")) == [
        "inner", "inner/key", "secret.txt"]
    assert (outside / "secret.txt").read_text() == "secret"


def test_a_link_on_the_way_is_never_followed(swapped, tmp_path):
    root, outside = swapped
    (outside / "secret.txt").chmod(0o600)
    for call in (lambda: files.entry(root, "sub/secret.txt"),
                 lambda: files.entries(root, "sub"),
                 lambda: files.entries(root, "sub/inner"),
                 lambda: files.read_text(root, "sub/secret.txt"),
                 lambda: files.open_file(root, "sub/inner/key"),
                 lambda: files.save_stream(root, "sub", "authorized_keys", io.BytesIO(b"k")),
                 lambda: files.save_stream(root, "sub/inner", "key", io.BytesIO(b"k")),
                 lambda: files.remove(root, "sub/secret.txt"),
                 lambda: files.remove(root, "sub/inner/key")):
        with pytest.raises(ValueError):
            call()
    (tmp_path / "upload").write_bytes(b"k")
    with pytest.raises(ValueError):
        files.move_in(root, "sub", "authorized_keys", tmp_path / "upload")
    assert (tmp_path / "upload").exists()
    _untouched(outside)
    assert stat.S_IMODE((outside / "secret.txt").stat().st_mode) == 0o600


def test_walks_leave_out_a_folder_swapped_for_a_link(swapped, tmp_path):
    root, outside = swapped
    assert files.stats(root) == (2, 1)
    files.copy_tree(root, tmp_path / "copy", ROOMY)
    assert sorted(p.name for p in (tmp_path / "copy").rglob("*")) == ["ok.txt"]
    data = b"".join(stream_archive(root, "r"))
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        assert t.getnames() == ["r", "r/ok.txt"]
    with pytest.raises(ValueError):
        list(stream_archive(root, "r", ("sub",)))
    _untouched(outside)


def test_a_folder_swapped_for_a_link_during_a_stream_is_not_entered(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "x.txt").write_text("x")
    (root / "z.txt").write_text("z")
    stream = stream_archive(root, "r")
    head = [next(stream), next(stream)]  # the headers of r and r/d: d was seen a folder
    (root / "d").rename(root / "d2")
    (root / "d").symlink_to(outside)  # swapped before d is entered
    data = zlib.decompress(b"".join(head + list(stream)), 31)
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        assert t.getnames() == ["r", "r/d", "r/z.txt"]
    assert b"secret" not in data


def _returns_soon(call):
    """Run ``call`` in a thread; what it raised (None if nothing), failing the test when it
    is still running after 5 seconds (it blocks)."""
    done = []

    def run():
        try:
            call()
            done.append(None)
        except Exception as exc:  # noqa: BLE001 - handed to the test
            done.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(5)
    assert done, "blocked"
    return done[0]


def test_a_fifo_is_refused_without_blocking(tree, tmp_path):
    for call in (lambda: files.read_text(tree, "fifo"),
                 lambda: files.open_file(tree, "fifo"),
                 lambda: files.entries(tree, "fifo")):
        assert isinstance(_returns_soon(call), ValueError)
    # a fifo where a listed file was: opened without waiting, then refused
    (tree / "sub" / "c.bin").unlink()
    os.mkfifo(tree / "sub" / "c.bin")
    fd = os.open(tree / "sub", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert isinstance(_returns_soon(lambda: safe_fs.open_file(fd, "c.bin")), ValueError)
    finally:
        os.close(fd)
    assert _returns_soon(lambda: files.copy_tree(tree, tmp_path / "copy", ROOMY)) is None
    assert _returns_soon(lambda: b"".join(stream_archive(tree, "t"))) is None


def test_open_by_descriptor_refuses_a_file_replaced_by_a_link(tree):
    fd = safe_fs.open_root(tree)
    try:
        (tree / "a.txt").unlink()
        (tree / "a.txt").symlink_to(tree.parent / "secret")
        with pytest.raises(ValueError):
            safe_fs.open_file(fd, "a.txt")
        with pytest.raises(ValueError):
            safe_fs.open_dir(fd, "link")
        with pytest.raises(ValueError):
            safe_fs.open_dir(fd, "..")
    finally:
        os.close(fd)


def test_copy_tree_keeps_to_the_limits(tree, tmp_path):
    with open(tree / "sparse.bin", "wb") as f:
        f.truncate(2**40)  # 1 TiB, no block of it on the disk
    with pytest.raises(ArchiveError, match="limit of 1.0 MiB"):
        files.copy_tree(tree, tmp_path / "copy", Limits(2**20, 1000))
    (tree / "sparse.bin").unlink()
    for i in range(20):
        os.link(tree / "a.txt", tree / f"hard{i}")
    with pytest.raises(ArchiveError, match="more than 10 files"):
        files.copy_tree(tree, tmp_path / "copy", Limits(2**20, 10))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root", "secret"]  # nothing left


# --- a notebook's folder, by page ----------------------------------------------------------


@pytest.fixture
def notebook(app):
    """rene's notebook (never started) with files in its folder, and rita, another renter."""
    with app.app_context():
        rene = User.get(User.name == "rene")
        create_user("rita", "renter", PASSWORD)
        notebook = Notebook.create(user=rene, name="lab", image="busybox")
        folder = notebook_folders.code_folder(app.config["DATA_ROOT"], notebook)
        (folder / "data").mkdir(parents=True)
        (folder / "train.py").write_text("print('<b>hi</b>')\n")
        (folder / "data" / "x.bin").write_bytes(os.urandom(5000))
        (folder / "escape").symlink_to("/etc")
        return notebook.id, folder


@pytest.fixture
def rene(client, accounts):
    login(client, "renter", "rene", PASSWORD)
    return client


def base(notebook):
    return f"/renter/notebooks/{notebook[0]}/files"


def test_browse_view_and_download_without_a_container(rene, notebook):
    page = rene.get(base(notebook)).get_data(as_text=True)
    assert f'href="/renter/notebooks/{notebook[0]}/files/data"' in page
    assert "train.py" in page and "escape" not in page
    view = rene.get(base(notebook) + "/train.py").get_data(as_text=True)
    assert "print(&#39;&lt;b&gt;hi&lt;/b&gt;&#39;)" in view  # escaped
    assert "file-not-shown" in rene.get(base(notebook) + "/data/x.bin").get_data(as_text=True)
    got = rene.get(base(notebook) + "/data/x.bin?download=1")
    assert got.status_code == 200 and "attachment" in got.headers["Content-Disposition"]
    assert got.data == (notebook[1] / "data" / "x.bin").read_bytes()
    archive = rene.get(base(notebook) + "?download=1")
    assert archive.headers["Content-Type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(archive.data)) as t:
        assert sorted(t.getnames()) == [f"notebook-{notebook[0]}",
                                        f"notebook-{notebook[0]}/data",
                                        f"notebook-{notebook[0]}/data/x.bin",
                                        f"notebook-{notebook[0]}/train.py"]
    for bad in ("/escape", "/escape/passwd", "/nothing", "/../x", "/data/../../x"):
        assert rene.get(base(notebook) + bad).status_code == 404


def _upload(client, content, name, token):
    made = client.post("/api/v1/uploads", json={"filename": name, "size": len(content)},
                       headers={"X-CSRFToken": token})
    assert made.status_code == 201, made.json
    key = made.json["key"]
    put = client.put(f"/api/v1/uploads/{key}?offset=0", data=content,
                     headers={"X-CSRFToken": token,
                              "Content-Type": "application/octet-stream"})
    assert put.json["received"] == len(content)
    return key


def test_upload_into_a_folder_then_delete(rene, notebook, app):
    token = csrf_token(rene, base(notebook))
    key = _upload(rene, b"new data", "new.csv", token)
    posted = rene.post(base(notebook) + "/upload", data={
        "csrf_token": token, "folder": "data", "upload": key})
    assert posted.status_code == 303
    assert posted.headers["Location"].endswith(base(notebook) + "/data")
    assert (notebook[1] / "data" / "new.csv").read_bytes() == b"new data"
    with app.app_context():
        assert Upload.select().count() == 0
    assert rene.post(base(notebook) + "/upload", data={
        "csrf_token": token, "folder": "data", "upload": key}).status_code == 303  # used up
    assert rene.post(base(notebook) + "/delete", data={
        "csrf_token": token, "path": "data/new.csv"}).status_code == 303
    assert not (notebook[1] / "data" / "new.csv").exists()
    assert rene.post(base(notebook) + "/delete", data={
        "csrf_token": token, "path": "escape"}).status_code == 404
    assert rene.post(base(notebook) + "/delete", data={"path": "train.py"}).status_code == 400
    assert (notebook[1] / "train.py").exists()  # no CSRF token, nothing deleted


def test_an_unfinished_upload_is_not_moved_in(rene, notebook):
    token = csrf_token(rene, base(notebook))
    made = rene.post("/api/v1/uploads", json={"filename": "half.bin", "size": 10},
                     headers={"X-CSRFToken": token}).json
    rene.put(f"/api/v1/uploads/{made['key']}", data=b"12345",
             headers={"X-CSRFToken": token, "Content-Type": "application/octet-stream"})
    page = rene.post(base(notebook) + "/upload", follow_redirects=True, data={
        "csrf_token": token, "folder": "", "upload": made["key"]}).get_data(as_text=True)
    assert "half.bin is not complete" in page
    assert not (notebook[1] / "half.bin").exists()


def test_another_renter_gets_404(client, accounts, notebook):
    login(client, "renter", "rita", PASSWORD)
    token = csrf_token(client, "/renter/notebooks")
    for path in ("", "/train.py", "/train.py?download=1", "?download=1"):
        assert client.get(base(notebook) + path).status_code == 404
    assert client.post(base(notebook) + "/delete", data={
        "csrf_token": token, "path": "train.py"}).status_code == 404
    assert client.post(base(notebook) + "/upload", data={
        "csrf_token": token, "folder": ""}).status_code == 404
    assert (notebook[1] / "train.py").exists()
