"""Algorithm and dataset versions in a training task's container, on real Podman: the
algorithm version is /code (the working folder, read-only) and the dataset version is
/dataset (read-only); the commands run as argument lists, no shell.

Each test drives the leader's pass (``Reconciler.run``) itself, as test_scheduler does;
the versions are made as a renter makes them, from real uploads of a real zip.
"""

import shutil

import pytest

from portal import algorithms, datasets, versions
from portal.models import Replica
from portal.tasks import create_task, rerun
from tests.integration.test_scheduler import cloud, output_of, settle  # noqa: F401
from tests.unit.test_algorithms import uploaded, zip_bytes

pytestmark = pytest.mark.podman


@pytest.fixture
def mounted(cloud):  # noqa: F811 (the fixture imported above)
    """``cloud`` with a data folder for the reconciler, and rene's algorithm (hello.txt,
    src/run.txt) and dataset (train.csv, labels/a.txt) versions."""
    app, renter, reconciler, backend = cloud
    reconciler.data_root = app.config["DATA_ROOT"]
    code = versions.latest(algorithms.create_algorithm(renter, "hello", "", uploaded(
        renter, "code.zip", zip_bytes({"hello.txt": b"hello from the code\n",
                                       "src/run.txt": b"run\n"}))))
    data = versions.latest(datasets.create_dataset(renter, "digits", "", [
        uploaded(renter, "train.csv", b"1,2,3\n"),
        uploaded(renter, "labels.zip", zip_bytes({"labels/a.txt": b"a\n"}))]))
    return app, renter, reconciler, backend, code, data


def run(mounted, argv, image):
    app, renter, reconciler, backend, code, data = mounted
    task = create_task(renter, "job", image, argv, {}, "default", [("worker", "tpu1", 1)],
                       algorithm_version=code.id, dataset_version=data.id)
    task = settle(reconciler, task)
    replica = Replica.get(Replica.task == task)
    return task, replica, output_of(backend, replica) if replica.container else ""


def test_the_code_and_the_dataset_are_in_the_container(mounted, test_image):
    task, replica, out = run(mounted, ["cat", "/code/hello.txt"], test_image)
    assert task.state == "succeeded", (replica.state, replica.reason, out)
    assert out == "hello from the code\n"
    task, replica, out = run(mounted, ["ls", "/dataset", "/dataset/labels"], test_image)
    assert task.state == "succeeded", (replica.state, replica.reason, out)
    assert "train.csv" in out and "labels" in out and "a.txt" in out
    task, replica, out = run(mounted, ["cat", "src/run.txt"], test_image)
    assert out == "run\n"  # a relative path: /code is the working folder
    again = settle(mounted[2], rerun(task))
    assert (again.algorithm_version_id, again.dataset_version_id) == (
        task.algorithm_version_id, task.dataset_version_id)


@pytest.mark.parametrize("target", ["/dataset/new.txt", "/code/new.txt"])
def test_the_versions_are_read_only(mounted, test_image, target):
    task, replica, out = run(mounted, ["busybox", "touch", target], test_image)
    assert task.state == "failed" and replica.exit_code != 0, out
    assert "Read-only file system" in out
    code, data = mounted[4], mounted[5]
    assert sorted(p.name for p in versions.folder(code).iterdir()) == ["hello.txt", "src"]
    assert sorted(p.name for p in versions.folder(data).iterdir()) == ["labels", "train.csv"]


def test_a_version_whose_files_are_gone_fails_with_a_reason(mounted, test_image):
    shutil.rmtree(versions.folder(mounted[5]))
    task, replica, _out = run(mounted, ["ls", "/dataset"], test_image)
    assert task.state == "failed" and "/dataset" in replica.reason
