"""Start-to-ready of a notebook through Hourglass's proxy, against a raw ``podman run``.

Starts ``flask --app app serve`` on a fresh instance (its own Podman service, the
scheduler, the notebook origin on the next port), makes a renter with an API
token and a CPU spec, creates a notebook on the JupyterLab image, opens it once
through the portal's Open (the one-time grant posted to the notebook origin) to
get the proxy's cookie, and stops it. Then N times: ``POST
/api/v1/notebooks/<id>/start`` and poll ``/nb/<replica>/api/status`` through the
proxy every 20 ms until JupyterLab answers 200; stop and wait for the stop.
Baseline in the same run: ``podman run -d -p 127.0.0.1:PORT:8888`` of the same
image with ``jupyter-lab`` and a token, polled the same way on ``/api/status``.
Prints median and p90 of both and the ratio (target: median <= 1.1 x raw).

    .venv/bin/python bench/notebook_ready.py [--runs 30]
"""

import argparse
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import flask, free_port, p90, wait  # noqa: E402
from scheduler.podman_service import podman_env  # noqa: E402

IMAGE = "localhost/hourglass-jupyter:latest"  # `make images` builds it
PASSWORD = "bench-password"
POLL = 0.02








def answers(session, url, **kwargs):
    try:
        return session.get(url, timeout=5, **kwargs).status_code == 200
    except requests.ConnectionError:
        return False




class Portal:
    """The portal as one renter: an API token for the JSON API, a signed-in browser session
    for Open and the notebook origin's cookie."""

    def __init__(self, url, notebook_url, token):
        self.url, self.notebook_url = url, notebook_url
        self.api = {"Authorization": f"Bearer {token}"}
        self.browser = requests.Session()

    def call(self, method, path, **kwargs):
        response = requests.request(method, f"{self.url}/api/v1{path}", headers=self.api,
                                    timeout=30, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def sign_in(self, name):
        page = self.browser.get(f"{self.url}/login").text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        self.browser.post(f"{self.url}/login", data={"name": name, "password": PASSWORD,
                                                     "csrf_token": token}).raise_for_status()

    def open(self, notebook):
        """The Open button: the portal's one-time grant, posted to the notebook origin.
        False while the notebook cannot be opened yet."""
        page = self.browser.get(f"{self.url}/renter/notebooks/{notebook}").text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        answer = self.browser.post(f"{self.url}/renter/notebooks/{notebook}/open",
                                   data={"csrf_token": token})
        grant = re.search(r'name="grant" value="([^"]+)"', answer.text)
        if grant is None:
            return False
        self.browser.post(f"{self.notebook_url}/_hourglass/enter", data={"grant": grant[1]},
                          headers={"Origin": self.url}, allow_redirects=False
                          ).raise_for_status()
        return True

    def replica(self, notebook):
        run = self.call("GET", f"/notebooks/{notebook}")["run"]
        return run and run["replicas"] and run["replicas"][0]


def hourglass_runs(runs, env, portal):
    miner = {"Authorization": f"Bearer {flask(env, 'token', 'create', 'mina')}"}
    wait(lambda: any(n["ready"] for n in requests.get(f"{portal.url}/api/v1/nodes",
                                                      headers=miner).json()))
    spec = {"name": "lab", "cpu": "1", "memory_gb": "1", "price": "1", "resources": {}}
    requests.post(f"{portal.url}/api/v1/specs", json=spec, headers=miner).raise_for_status()
    notebook = portal.call("POST", "/notebooks", json={
        "name": "bench", "image": IMAGE, "spec": "lab", "pool": "default", "start": True})["id"]
    portal.sign_in("rene")
    wait(lambda: (r := portal.replica(notebook)) and r["state"] == "running", timeout=120,
         every=0.1)
    wait(lambda: portal.open(notebook), every=0.1)
    samples = []
    for i in range(runs + 1):
        portal.call("POST", f"/notebooks/{notebook}/stop")
        wait(lambda: portal.call("GET", f"/notebooks/{notebook}")["state"] != "running"
             and (r := portal.replica(notebook)) and r["state"] in ("stopped", "succeeded"))
        before = time.monotonic()
        portal.call("POST", f"/notebooks/{notebook}/start")
        replica = wait(lambda: (r := portal.replica(notebook)) and r["state"] != "stopped"
                       and r, every=POLL)
        status = f"{portal.notebook_url}/nb/{replica['id']}/api/status"
        wait(lambda status=status: answers(portal.browser, status), every=POLL)
        if i:  # the first run after the image was first used warms the page cache
            samples.append(time.monotonic() - before)
    portal.call("POST", f"/notebooks/{notebook}/stop")
    return samples


def podman_runs(runs, conf):
    env = podman_env(conf)
    samples, session = [], requests.Session()
    for i in range(runs + 1):
        port, token = free_port(), secrets.token_urlsafe(16)
        before = time.monotonic()
        cid = subprocess.run(["podman", "run", "-d", "-p", f"127.0.0.1:{port}:8888", IMAGE,
                              "jupyter-lab", "--ip=0.0.0.0", "--port=8888", "--no-browser",
                              f"--ServerApp.token={token}"], env=env, capture_output=True,
                             text=True, check=True).stdout.strip()
        wait(lambda port=port, token=token: answers(
            session, f"http://127.0.0.1:{port}/api/status",
            headers={"Authorization": f"token {token}"}), every=POLL)
        if i:
            samples.append(time.monotonic() - before)
        subprocess.run(["podman", "rm", "-f", "-t", "0", cid], env=env, capture_output=True)
    return samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    instance = Path(tempfile.mkdtemp(prefix="hg-bench-"))
    port, notebook_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOURGLASS_")}
    env.update(HOURGLASS_INSTANCE=str(instance), PORT=str(port),
               HOURGLASS_NOTEBOOK_PORT=str(notebook_port), HOURGLASS_TICK_SECONDS="1")
    flask(env, "db", "upgrade")
    flask(env, "user", "add", "mina", "--role", "miner", "--password-stdin", stdin=PASSWORD)
    flask(env, "user", "add", "rene", "--role", "renter", "--password-stdin", stdin=PASSWORD)
    flask(env, "billing", "recharge", "rene", "1000000")
    url = f"http://127.0.0.1:{port}"
    portal = Portal(url, f"http://127.0.0.1:{notebook_port}", flask(env, "token", "create",
                                                                     "rene"))
    server = subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "serve"], env=env,
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        wait(lambda: answers(requests, f"{url}/healthz"))
        ours = hourglass_runs(runs, env, portal)
        raw = podman_runs(runs, instance / "containers.conf")
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(30)
    med = statistics.median
    print(f"runs: {runs}")
    print(f"hourglass start -> /api/status through the proxy: median {med(ours):.3f} s  "
          f"p90 {p90(ours):.3f} s")
    print(f"podman run -d   -> /api/status:                   median {med(raw):.3f} s  "
          f"p90 {p90(raw):.3f} s")
    print(f"ratio (median): {med(ours) / med(raw):.2f}  (p90): {p90(ours) / p90(raw):.2f}")


if __name__ == "__main__":
    main()
