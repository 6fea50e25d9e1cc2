"""Archives unpacked safely (portal.archives.unpack) with crafted zips and tars, and a folder
streamed as a tar.gz (stream_archive)."""

import io
import os
import stat
import struct
import tarfile
import zipfile

import pytest

from portal.archives import ArchiveError, Limits, Stats, limits, stream_archive, unpack

ROOMY = Limits(max_bytes=10 * 2**20, max_files=100)


def make_zip(path, members):
    """``members``: [(name or ZipInfo, bytes)]."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(name, data)
    return path


def tar_member(name, data=b"", kind=tarfile.REGTYPE, linkname="", mode=0o644):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, io.BytesIO(data) if kind == tarfile.REGTYPE else None


def make_tar(path, members, mode="w", **options):
    with tarfile.open(path, mode, **options) as t:
        for info, data in members:
            t.addfile(info, data)
    return path


def assert_nothing_left(tmp_path, dest):
    assert not os.path.lexists(dest)
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}.")]
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()


def refused(tmp_path, archive, lim=ROOMY, match=None):
    dest = tmp_path / "out" / "dest"
    dest.parent.mkdir(exist_ok=True)
    with pytest.raises(ArchiveError, match=match):
        unpack(archive, dest, lim)
    assert_nothing_left(tmp_path, dest)


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/x", "/etc/x", "..\\..\\x",
                                  "a\\..\\..\\x", "C:/x", "C:x", "a/..", "ok\nname"])
def test_a_zip_member_outside_the_folder_is_refused(tmp_path, name):
    refused(tmp_path, make_zip(tmp_path / "a.zip", [("good.txt", b"1"), (name, b"evil")]))


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/x", "./../x"])
def test_a_tar_member_outside_the_folder_is_refused(tmp_path, name):
    refused(tmp_path, make_tar(tmp_path / "a.tar", [tar_member("good.txt", b"1"),
                                                     tar_member(name, b"evil")]))


@pytest.mark.parametrize("kind, linkname", [
    (tarfile.SYMTYPE, "/etc/passwd"), (tarfile.SYMTYPE, "../../x"), (tarfile.SYMTYPE, "good"),
    (tarfile.LNKTYPE, "../../etc/passwd"), (tarfile.LNKTYPE, "good"),
    (tarfile.CHRTYPE, ""), (tarfile.BLKTYPE, ""), (tarfile.FIFOTYPE, "")])
def test_links_devices_and_fifos_in_a_tar_are_refused(tmp_path, kind, linkname):
    archive = make_tar(tmp_path / "a.tar.gz", [tar_member("good", b"1"),
                                                tar_member("link", kind=kind,
                                                           linkname=linkname)], "w:gz")
    refused(tmp_path, archive, match="link, device file or fifo")


def test_a_symlink_in_a_zip_is_refused(tmp_path):
    info = zipfile.ZipInfo("link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    refused(tmp_path, make_zip(tmp_path / "a.zip", [(info, b"/etc/passwd")]),
            match="link, device file or fifo")


def test_a_zip_bomb_stops_at_the_cap(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", [("zeros", bytes(30 * 2**20))])
    assert archive.stat().st_size < 2**17  # 30 MiB of zeros in under 128 KiB
    refused(tmp_path, archive, Limits(2**20, 100), match="more than the limit")


def test_many_members_together_pass_the_cap(tmp_path):
    archive = make_zip(tmp_path / "a.zip", [(f"f{i}", bytes(300_000)) for i in range(5)])
    refused(tmp_path, archive, Limits(2**20, 100), match="more than the limit")


def _lie_about_sizes(path, size):
    """Write ``size`` as the uncompressed size of every member, local and central."""
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = data.find(signature)
        while start != -1:
            struct.pack_into("<I", data, start + offset, size)
            start = data.find(signature, start + 4)
    path.write_bytes(bytes(data))


def test_a_zip_whose_header_lies_about_its_size_is_refused(tmp_path):
    archive = make_zip(tmp_path / "liar.zip", [("zeros", bytes(5 * 2**20))])
    _lie_about_sizes(archive, 100)
    assert zipfile.ZipFile(archive).infolist()[0].file_size == 100
    refused(tmp_path, archive, Limits(2**20, 100))


def test_a_zip_that_says_it_is_huge_but_is_small_unpacks_what_it_holds(tmp_path):
    archive = make_zip(tmp_path / "a.zip", [("small", b"hello")])
    _lie_about_sizes(archive, 2**31)
    # the declared size is not trusted either way: the bytes written count
    assert unpack(archive, tmp_path / "dest", Limits(2**20, 100)) == Stats(5, 1)
    assert (tmp_path / "dest" / "small").read_bytes() == b"hello"


def test_too_many_members_are_refused_before_anything_is_written(tmp_path):
    refused(tmp_path, make_zip(tmp_path / "a.zip", [(f"f{i}", b"") for i in range(11)]),
            Limits(2**20, 10), match="more than 10")
    members = [tar_member(f"f{i}") for i in range(11)]
    refused(tmp_path, make_tar(tmp_path / "a.tar", members), Limits(2**20, 10),
            match="more than 10")


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("names", [("a.txt", "a.txt"), ("d/a", "d//a"), ("a", "./a"),
                                   ("a", "a/b"), ("a/b", "a")])
def test_a_name_twice_is_refused(tmp_path, names):
    refused(tmp_path, make_zip(tmp_path / "a.zip", [(n, b"x") for n in names]),
            match="name twice")
    refused(tmp_path, make_tar(tmp_path / "a.tar", [tar_member(n, b"x") for n in names]),
            match="name twice")


def test_a_folder_named_twice_is_fine(tmp_path):
    archive = make_tar(tmp_path / "a.tar", [tar_member("d", kind=tarfile.DIRTYPE),
                                            tar_member("d/f", b"x"),
                                            tar_member("d", kind=tarfile.DIRTYPE)])
    assert unpack(archive, tmp_path / "dest", ROOMY) == Stats(1, 1)


def _zip_with_raw_name(path, raw):
    """A zip with one member named by the bytes ``raw``, without the UTF-8 flag."""
    placeholder = "N" * len(raw)
    make_zip(path, [(placeholder, b"data")])
    path.write_bytes(path.read_bytes().replace(placeholder.encode(), raw))
    assert not zipfile.ZipFile(path).infolist()[0].flag_bits & 0x800
    return path


@pytest.mark.parametrize("raw, name", [
    ("数据/训练.txt".encode("gbk"), "数据/训练.txt"),  # a Chinese Windows zip
    ("café.txt".encode(), "café.txt"),  # UTF-8 without the flag (macOS, Info-ZIP)
    (b"caf\x82.txt", "café.txt"),  # CP 437, the zip format's default
])
def test_zip_names_without_the_utf8_flag(tmp_path, raw, name):
    archive = _zip_with_raw_name(tmp_path / "a.zip", raw)
    unpack(archive, tmp_path / "dest", ROOMY)
    assert (tmp_path / "dest" / name).read_bytes() == b"data"


def test_tar_names_in_gbk_are_read_and_undecodable_ones_refused(tmp_path):
    def tar_with(raw):
        name = raw.decode("utf-8", "surrogateescape")
        return make_tar(tmp_path / "a.tar", [tar_member(name, b"data")],
                        format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape")

    unpack(tar_with("模型.py".encode("gbk")), tmp_path / "dest", ROOMY)
    assert (tmp_path / "dest" / "模型.py").read_bytes() == b"data"
    refused(tmp_path, tar_with(b"\xff\xfe.txt"), match="no known encoding")


def test_a_failure_midway_leaves_nothing_behind(tmp_path):
    members = [tar_member("d", kind=tarfile.DIRTYPE), tar_member("d/a", b"a" * 1000),
               tar_member("d/b", b"b" * 1000), tar_member("d/c", kind=tarfile.SYMTYPE,
                                                          linkname="/")]
    refused(tmp_path, make_tar(tmp_path / "a.tar.gz", members, "w:gz"))


@pytest.mark.parametrize("mtime", ["1e300", "-1e300", "99999999999999999999"])
def test_a_date_out_of_range_is_refused(tmp_path, mtime):
    info, data = tar_member("a.txt", b"1")
    info.pax_headers = {"mtime": mtime}
    refused(tmp_path, make_tar(tmp_path / "a.tar", [(info, data)],
                               format=tarfile.PAX_FORMAT), match="out of range")


def test_a_damaged_archive_leaves_nothing_behind(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", [tar_member("a", os.urandom(200_000)),
                                                tar_member("b", os.urandom(200_000))], "w:gz")
    archive.write_bytes(archive.read_bytes()[:250_000])
    refused(tmp_path, archive, match="damaged")


@pytest.mark.parametrize("data", [b"", b"just some text\n", os.urandom(3000)])
def test_what_is_not_an_archive_is_refused(tmp_path, data):
    (tmp_path / "a.zip").write_bytes(data)
    refused(tmp_path, tmp_path / "a.zip", match="not a zip or tar")


def test_an_encrypted_zip_is_refused(tmp_path):
    archive = make_zip(tmp_path / "a.zip", [("secret", b"x")])
    data = bytearray(archive.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = data.find(signature)
        data[start + offset] |= 1
    archive.write_bytes(bytes(data))
    refused(tmp_path, archive, match="encrypted")


GOOD = {"README.md": b"# hello\n", "src/train.py": b"print(1)\n", "src/run.sh": b"#!/bin/sh\n",
        "data/empty": b"", "data/big.bin": os.urandom(100_000)}


def _good_tar(path, mode):
    members = [tar_member("src", kind=tarfile.DIRTYPE, mode=0o777),
               tar_member("empty-dir", kind=tarfile.DIRTYPE)]
    for name, data in GOOD.items():
        members.append(tar_member(name, data, mode=0o4755 if name.endswith(".sh") else 0o666))
    return make_tar(path, members, mode)


@pytest.mark.parametrize("kind", ["w", "w:gz", "w:bz2", "w:xz", "zip"])
def test_a_good_archive_unpacks_with_safe_modes_and_the_right_stats(tmp_path, kind):
    archive = tmp_path / "misnamed.zip.tar"  # the name says nothing true
    if kind == "zip":
        run = zipfile.ZipInfo("src/run.sh")
        run.external_attr = (stat.S_IFREG | 0o4755) << 16  # executable, and setuid
        members = [(n, d) for n, d in GOOD.items() if n != "src/run.sh"]
        make_zip(archive, [*members, (run, GOOD["src/run.sh"]), ("empty-dir/", b"")])
    else:
        _good_tar(archive, kind)
    dest = tmp_path / "dest"
    stats = unpack(archive, dest, ROOMY)
    assert stats == Stats(sum(len(d) for d in GOOD.values()), len(GOOD))
    for name, data in GOOD.items():
        assert (dest / name).read_bytes() == data
    modes = {p.relative_to(dest).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in dest.rglob("*")}
    assert modes.pop("src/run.sh") == 0o755  # executable kept, setuid never
    assert set(modes.values()) <= {0o644, 0o755}
    assert {n for n, m in modes.items() if m == 0o755} == {"src", "data", "empty-dir"}
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    if os.geteuid() == 0:  # given to the container's user
        assert {(p.stat().st_uid, p.stat().st_gid) for p in [dest, *dest.rglob("*")]} == {
            (1000, 1000)}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_destination_must_not_exist(tmp_path):
    (tmp_path / "dest").mkdir()
    with pytest.raises(FileExistsError):
        unpack(make_zip(tmp_path / "a.zip", [("a", b"1")]), tmp_path / "dest", ROOMY)


def test_limits_come_from_the_settings(app):
    with app.app_context():
        assert limits() == Limits(20 * 2**30, 100_000)


def test_a_folder_streams_as_a_tar_gz_without_links(tmp_path):
    folder = tmp_path / "work"
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha")
    (folder / "sub" / "数据.bin").write_bytes(os.urandom(3 * 2**20 + 7))
    (folder / "sub" / "deeper" / "run.sh").write_text("#!/bin/sh\n")
    (folder / "sub" / "deeper" / "run.sh").chmod(0o755)
    (folder / "link").symlink_to("/etc/passwd")
    os.mkfifo(folder / "fifo")
    chunks = list(stream_archive(folder, "work"))
    assert max(len(c) for c in chunks) <= 2 * 2**20  # handed out piece by piece
    (tmp_path / "out.tar.gz").write_bytes(b"".join(chunks))
    dest = tmp_path / "back"
    unpack(tmp_path / "out.tar.gz", dest, ROOMY)  # our own unpack accepts it: no links
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "work", "work/a.txt", "work/sub", "work/sub/deeper", "work/sub/deeper/run.sh",
        "work/sub/数据.bin"]
    assert (dest / "work/sub/数据.bin").read_bytes() == (folder / "sub/数据.bin").read_bytes()
    assert os.access(dest / "work/sub/deeper/run.sh", os.X_OK)
