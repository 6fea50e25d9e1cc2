"""Deleting a version while another is made, and sweeping what interrupted changes of
algorithms and datasets left (``portal.version_sweep``): real folders under the app's data
folder, ages set on them."""

import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest

from portal import version_sweep, versions
from portal.models import Algorithm, AlgorithmVersion, Dataset, DatasetVersion, utcnow
from tests.unit import test_algorithms as algo
from tests.unit import test_tasks as shared

world = shared.world
ctx = algo.ctx
DAY = 24 * 3600


def write(path, text="x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def with_file(text):
    return lambda path: write(path / "model.py", text).parent


def test_a_version_made_while_one_is_deleted_keeps_its_files(ctx, monkeypatch):
    owner = algo.code_version().algorithm
    second = versions.make(owner, with_file("v2"))
    made = []
    real_rmtree = shutil.rmtree

    def another_make_first(path, *args, **kwargs):
        # Another request saves a version of the same algorithm just as this delete
        # removes its files: it gets the number the deleted one had.
        if not made:
            made.append(None)  # once: make removes its staging folder with rmtree too
            made[0] = versions.make(owner, with_file("the new v2"))
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", another_make_first)
    versions.delete_version(second)
    assert made[0].number == second.number
    assert (versions.folder(made[0]) / "model.py").read_text() == "the new v2"
    assert sorted(p.name for p in versions.folder(made[0]).parent.iterdir()) == ["1", "2"]


def test_a_version_whose_folder_cannot_be_moved_is_not_deleted(ctx, monkeypatch):
    version = algo.code_version()
    real_rename = os.rename

    def refuse_trash(source, dest):
        if ".trash-" in str(dest):
            raise PermissionError(13, "Permission denied", str(dest))
        return real_rename(source, dest)

    monkeypatch.setattr(os, "rename", refuse_trash)
    with pytest.raises(PermissionError):
        versions.delete_version(version)
    assert AlgorithmVersion.get_or_none(AlgorithmVersion.id == version.id) is not None
    assert (versions.folder(version) / "hello.txt").read_bytes() == b"hello from v1\n"
    monkeypatch.setattr(os, "rename", real_rename)
    versions.delete_version(version)
    assert not versions.folder(version).exists()
    assert [p.name for p in versions.folder(version).parent.iterdir()] == []


def aged(path, seconds):
    """Set ``path``'s times ``seconds`` in the past; returns it."""
    moment = time.time() - seconds
    os.utime(path, (moment, moment), follow_symlinks=False)
    return path


def test_sweep_removes_old_staging_folders_and_owners_without_versions(ctx):
    rene = algo.renter()
    kept_version = algo.code_version()
    owner_folder = versions.folder(kept_version).parent
    aged(versions.folder(kept_version), 3 * DAY)  # a saved version, however old, stays
    old = [aged(write(owner_folder / name / "f"), 2 * DAY).parent for name in (
        ".new-0a1b", ".trash-1-2c3d", ".new-0a1b.unpack-4e5f", "..new-0a1b.unpack-6a7b")]
    for folder in old:
        aged(folder, 2 * DAY)
    stray = aged(write(owner_folder / ".new-9f.part"), 2 * DAY)
    young = write(owner_folder / ".new-young" / "f").parent  # a version being made now
    long_ago = utcnow() - timedelta(days=2)
    orphans = [Algorithm.create(user=rene, name="crashed", created_at=long_ago),
               Dataset.create(user=rene, name="crashed", created_at=long_ago)]
    orphan_files = [write(Path(versions.data_root()) / kind / str(owner.id) / ".new-1" / "f")
                    for kind, owner in zip(("algorithms", "datasets"), orphans, strict=True)]
    being_made = Dataset.create(user=rene, name="being-made")  # its version 1 is on the way
    kept_dataset = Dataset.create(user=rene, name="saved", created_at=long_ago)
    DatasetVersion.create(dataset=kept_dataset, number=1)

    assert version_sweep.sweep() == len(old) + 1 + len(orphans)
    assert [p.exists() for p in old + [stray]] == [False] * (len(old) + 1)
    assert young.exists() and (versions.folder(kept_version) / "hello.txt").exists()
    assert not any(path.exists() or path.parent.parent.exists() for path in orphan_files)
    assert Algorithm.get_or_none(Algorithm.id == orphans[0].id) is None
    assert Dataset.get_or_none(Dataset.id == orphans[1].id) is None
    assert {d.name for d in Dataset.select()} == {"being-made", "saved"}
    assert Algorithm.get_by_id(kept_version.algorithm_id).name == "mnist"
    assert being_made.id and version_sweep.sweep() == 0
    assert version_sweep.sweep(timedelta(0)) == 2  # the young folder, and being-made
