"""The renter's images on real Podman: a ``podman save`` archive loaded under our name, a
build from a Containerfile with no network and its log, a running container committed
and run, the JupyterLab check, a copy to a node with a store of its own, and a task
started on a node that lacked its image (the start copies it there).

The second node is a real ``podman system service`` with its own image store
(``--root``/``--runroot``), so a copy is a real copy, not the same store seen twice.
"""

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from portal import images, uploads
from portal.models import Image, Node, Replica, Task, Upload, User
from portal.specs import parse_spec, save_spec
from portal.tasks import create_task
from portal.tokens import create_token
from portal.users import create_user
from scheduler.discovery import Discovery
from scheduler.podman import PodmanBackend
from scheduler.podman_service import containers_conf_text, podman_env
from scheduler.reconcile import Reconciler
from scheduler.renter_images import RenterImages, copy_image
from tests.conftest import PASSWORD, TEST_LABEL
from tests.support import fund, wait_for

pytestmark = pytest.mark.podman


@pytest.fixture
def world(instance, podman_service, test_image, monkeypatch):
    """An app on the session's Podman service with one renter; the images it made go after."""
    from app import create_app
    from portal import db

    monkeypatch.setenv("HOURGLASS_PODMAN_URL", podman_service.url)
    app = create_app({"TESTING": True})
    ctx = app.app_context()
    ctx.push()
    db.upgrade()
    renter = fund(create_user("rene", "renter", PASSWORD))
    yield app, renter
    backend = PodmanBackend(podman_service.url, 30)
    for (reference,) in Image.select(Image.reference).where(Image.user.is_null(False)).tuples():
        backend.remove_image(reference)
    ctx.pop()


@pytest.fixture
def store_node():
    """A Podman service with a store of its own: (its URL, its backend). Everything of its
    own is under one folder with a short path (a socket's path has at most 107 bytes):
    image store (``vfs``: nothing mounted), run root and libpod's tmpdir, so that nothing
    of the session's service is touched, and removing the folder removes it all."""
    folder = Path(tempfile.mkdtemp(prefix="hg-store-"))
    conf = folder / "containers.conf"
    conf.write_text(containers_conf_text() + '[network]\nnetwork_backend = "netavark"\n')
    url = f"unix://{folder}/podman.sock"
    own = ["--root", str(folder / "root"), "--runroot", str(folder / "run"),
           "--tmpdir", str(folder / "tmp"), "--storage-driver", "vfs"]
    with open(folder / "service.log", "w") as log:
        process = subprocess.Popen(["podman", *own, "system", "service", "--time=0", url],
                                   env=podman_env(conf), stdout=log, stderr=log,
                                   start_new_session=True)
    backend = PodmanBackend(url, 30)
    try:
        wait_for(backend.ping, timeout=20, what="the second Podman service")
        yield url, backend
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def added(app, image, timeout=120):
    app.extensions["hourglass.renter_images"].wait(image.id, timeout)
    return Image.get_by_id(image.id)


def test_an_archive_is_loaded_under_our_name_and_has_no_jupyterlab(world, podman_service,
                                                                    test_image, tmp_path):
    app, renter = world
    archive = tmp_path / "busybox.tar"
    subprocess.run(["podman", "save", "-o", str(archive), test_image], check=True,
                   env=podman_env(podman_service.conf), capture_output=True)
    image = images.new_image(renter, "my busybox", "upload")
    finished = []
    app.extensions["hourglass.renter_images"].load(image.id, archive,
                                                    done=lambda: finished.append(True))
    image = added(app, image)
    assert (image.state, image.reason, image.jupyter) == ("ready", "", False)
    assert image.reference == f"localhost/hourglass/u{renter.id}/my-busybox:{image.id}"
    assert image.size_bytes > 100_000 and finished == [True]
    assert "JupyterLab: no" in image.log
    backend = PodmanBackend(podman_service.url, 30)
    assert backend.run_once(image.reference, ["/bin/echo", "loaded"]) == (0, "loaded\n")


def test_an_upload_becomes_an_image_through_the_api(world, podman_service, test_image,
                                                    tmp_path):
    app, renter = world
    archive = tmp_path / "busybox.tar"
    subprocess.run(["podman", "save", "-o", str(archive), test_image], check=True,
                   env=podman_env(podman_service.conf), capture_output=True)
    upload = uploads.create(renter, "busybox.tar", archive.stat().st_size)
    with open(archive, "rb") as data:
        uploads.append(upload, 0, data)
    headers = {"Authorization": f"Bearer {create_token(renter, 'test')[1]}"}
    client = app.test_client()
    answer = client.post("/api/v1/images/upload", json={"name": "up", "upload": upload.key},
                         headers=headers)
    assert answer.status_code == 202, answer.get_json()
    image_id = answer.get_json()["id"]
    app.extensions["hourglass.renter_images"].wait(image_id, 120)
    got = client.get(f"/api/v1/images/{image_id}", headers=headers).get_json()
    assert (got["image"]["state"], got["image"]["jupyter"], got["running"]) == \
        ("ready", False, False)
    assert any("loaded: localhost/hourglass/u" in line["text"] for line in got["lines"])
    assert not Upload.select().where(Upload.id == upload.id).exists()  # discarded
    again = client.post("/api/v1/images/upload", json={"name": "up", "upload": upload.key},
                        headers=headers)
    assert again.status_code == 409


def test_a_broken_archive_fails_with_a_reason(world, tmp_path):
    app, renter = world
    (tmp_path / "junk.tar").write_bytes(b"junk")
    image = images.new_image(renter, "junk", "upload")
    app.extensions["hourglass.renter_images"].load(image.id, tmp_path / "junk.tar")
    image = added(app, image)
    assert image.state == "failed" and "tar" in image.reason


def test_a_build_runs_without_network_and_logs_each_step(world, podman_service, test_image):
    app, renter = world
    text = (f"FROM {test_image}\nRUN echo hi > /hi\n"
            "RUN /bin/busybox wget -q -T 2 -O /dev/null http://1.1.1.1/ || echo no-network\n")
    image = images.add_build(renter, "hello", text)
    image = added(app, image)
    assert image.state == "ready", image.log
    assert "STEP 2/3: RUN echo hi > /hi" in image.log and "no-network" in image.log
    backend = PodmanBackend(podman_service.url, 30)
    assert backend.run_once(image.reference, ["/bin/cat", "/hi"]) == (0, "hi\n")
    live = images.log_view(image)
    assert not live["running"] and any("STEP 1/3" in line["text"] for line in live["lines"])


def test_a_failing_build_says_so(world, test_image):
    app, renter = world
    image = added(app, images.add_build(renter, "bad", f"FROM {test_image}\nRUN exit 3\n"))
    assert image.state == "failed" and "exited with" in image.reason


def test_a_build_past_its_time_is_killed(world, podman_service, test_image, tmp_path):
    app, renter = world
    engine = RenterImages(podman_service.url, tmp_path / "containers.conf", build_seconds=3)
    image = images.new_image(renter, "slow", "build")
    began = time.monotonic()
    engine.build(image.id, f"FROM {test_image}\nRUN echo started && sleep 60\n")
    engine.wait(image.id, 60)
    image = Image.get_by_id(image.id)
    assert (image.state, image.reason) == ("failed", "the build took longer than 3 s")
    assert "started" in image.log and time.monotonic() - began < 30


def test_a_running_container_is_committed_and_runs(world, podman_service, test_image):
    app, renter = world
    backend = PodmanBackend(podman_service.url, 30)
    with backend.call() as client:
        container = client.containers.create(
            test_image, entrypoint=["/bin/sh", "-c"],
            command=["echo kept > /kept; exec sleep 60"], labels={TEST_LABEL: "1"})
        container.start()
    try:
        wait_for(lambda: backend.inspect(container.id).status == "running",
                 what="the container to run")
        time.sleep(0.3)  # its command has written /kept
        image = images.new_image(renter, "saved", "commit")
        app.extensions["hourglass.renter_images"].commit(image.id, podman_service.url,
                                                          container.id)
        image = added(app, image)
        assert (image.state, image.jupyter) == ("ready", False), image.reason
        assert backend.run_once(image.reference, ["/bin/cat", "/kept"]) == (0, "kept\n")
    finally:
        backend.remove(container.id)


def test_the_jupyterlab_image_passes_the_check(world, podman_service, jupyter_image):
    app, _renter = world
    engine = app.extensions["hourglass.renter_images"]
    assert engine.has_jupyter(podman_service.url, jupyter_image)


def test_copy_to_a_node_with_its_own_store(world, podman_service, store_node, test_image):
    _app, _renter = world
    url, target = store_node
    source = PodmanBackend(podman_service.url, 30)
    assert not target.image_exists(test_image)
    copy_image(source, target, test_image)
    assert target.image_sizes()[test_image] > 100_000
    assert target.run_once(test_image, ["/bin/echo", "there"]) == (0, "there\n")


def test_a_start_copies_the_image_to_the_node_that_lacks_it(world, podman_service, store_node,
                                                            test_image, tmp_path):
    app, renter = world
    url, target = store_node
    copy_image(PodmanBackend(podman_service.url, 30), target, test_image)  # its probe image
    image = added(app, images.add_build(renter, "mine", f"FROM {test_image}\nRUN echo x > /x\n"))
    assert image.state == "ready" and not target.image_exists(image.reference)
    Node.create(name="second", url=url, source="manual")
    Discovery(podman_service.url, probe_image=test_image).run()
    local = Node.get(Node.url == podman_service.url)
    assert Node.get(Node.name == "second").ready, Node.get(Node.name == "second").reason
    Node.update(enabled=False).where(Node.id == local.id).execute()  # only "second" takes it
    save_spec(None, parse_spec("small", "0.1", "0.0625", "1", {}))
    task = create_task(User.get_by_id(renter.id), "copied", image.reference, ["/bin/cat", "/x"],
                       {}, "default", [("main", "small", 1)])
    reconciler = Reconciler(podman_service.url, grace=1)

    def ended():
        reconciler.run()
        return Task.get_by_id(task.id).state in ("succeeded", "failed")
    wait_for(ended, timeout=120, interval=0.3, what="the task to end")
    replica = Replica.get(Replica.task == task)
    try:
        assert replica.state == "succeeded", replica.reason
        assert target.image_exists(image.reference)
        assert "".join(target.logs(replica.container)) == "x\n"
    finally:
        target.remove(replica.container)
        target.remove_image(image.reference)


def test_an_archive_with_an_unclean_member_name_is_refused_and_names_nothing(
        world, podman_service, test_image, tmp_path):
    # The engine's loader reads ./manifest.json as manifest.json: its RepoTags would retag
    # an image of the node's (a preset) with the renter's.
    import io
    import json
    import tarfile
    app, renter = world
    victim = "localhost/hourglass-victim-preset:latest"
    archive = tmp_path / "busybox.tar"
    subprocess.run(["podman", "save", "--format", "docker-archive", "-o", str(archive),
                    test_image], check=True, env=podman_env(podman_service.conf),
                   capture_output=True)
    crafted = tmp_path / "crafted.tar"
    with tarfile.open(archive) as tar_in, tarfile.open(crafted, "w") as tar_out:
        for member in tar_in:
            data = tar_in.extractfile(member) if member.isfile() else None
            if member.name == "manifest.json":
                manifest = json.load(data)
                manifest[0]["RepoTags"] = [victim]
                raw = json.dumps(manifest).encode()
                member.name, member.size, data = "./manifest.json", len(raw), io.BytesIO(raw)
            tar_out.addfile(member, data)
    image = images.new_image(renter, "crafted", "upload")
    app.extensions["hourglass.renter_images"].load(image.id, crafted)
    image = added(app, image)
    backend = PodmanBackend(podman_service.url, 30)
    try:
        assert image.state == "failed" and "not a plain path" in image.reason
        assert not backend.image_exists(victim)
    finally:
        backend.remove_image(victim)


def test_the_jupyterlab_check_container_has_no_privileges_and_limits(world, podman_service,
                                                                     test_image):
    script = ("grep -E 'NoNewPrivs|CapEff' /proc/self/status; "
              "cat /sys/fs/cgroup/memory.max 2>/dev/null "
              "|| cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
              "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max; "
              "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    code, out = PodmanBackend(podman_service.url, 30).run_once(test_image,
                                                               ["/bin/sh", "-c", script])
    lines = out.split()
    assert code == 0, out
    assert lines[lines.index("NoNewPrivs:") + 1] == "1"
    assert lines[lines.index("CapEff:") + 1] == "0000000000000000"
    assert str(512 << 20) in lines and "64" in lines and "100000" in lines


def test_a_build_step_has_memory_and_cpu_limits(world, test_image):
    app, renter = world
    text = (f"FROM {test_image}\nRUN cat /sys/fs/cgroup/memory.max 2>/dev/null "
            "|| cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
            "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us\n")
    image = added(app, images.add_build(renter, "limited", text))
    assert image.state == "ready", image.log
    lines = image.log.splitlines()
    assert str(4 << 30) in lines and ("200000" in lines or "200000 100000" in lines)
