"""Renters and miners on a live Hourglass, as locust users (``bench/load.py`` runs it).

Each renter signs in through the real form, browses their pages and, one task at a
time, submits a short training task, follows it until it ends and deletes it (so its
container and network go), then browses a while before the next. Half the renters do
all of that through the JSON API with their personal token (submit, GET the task,
DELETE); the other half through the pages as a browser does (the form with its CSRF
token, the task page's 2-second htmx refresh, the Delete button's POST). Each miner
signs in and pages through the Records page (its "Older" links), the ledger API
(``next_before_id``), machine-time, nodes, users, specs and pools.

Requests are named by route (``/renter/tasks/[id]``), so locust's table has one line
per page or endpoint. A page that answers anything but 200, or sends the user to a
sign-in page, is a failure, as is any other answer than the one the route documents.

``HOURGLASS_LOAD_CONFIG`` names the JSON file ``bench/load.py`` writes: the renters'
and miners' names and tokens, their password, and the image, argv, spec and pool of
the tasks. Run it with ``MinerUser.fixed_count`` miners plus the renters as users.
"""

import html
import itertools
import json
import os
import random
import re
import time
from pathlib import Path

from locust import HttpUser, between, task
from locust.clients import LocustHttpAdapter
from requests.exceptions import ConnectionError as NoAnswer
from urllib3.exceptions import ProtocolError

CONFIG = json.loads(Path(os.environ["HOURGLASS_LOAD_CONFIG"]).read_text())
ENDED = {"succeeded", "failed", "stopped", "lost"}
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
CSRF_HEADER = re.compile(r'"X-CSRFToken": "([^"]+)"')
OLDER = re.compile(r'<a href="([^"]+)" rel="next">')
TASK_URL = re.compile(r"/renter/tasks/(\d+)$")
PAUSE = (5, 20)  # seconds a renter browses between one task's end and the next submission

_renters = itertools.count()
_miners = itertools.count()


def _why(response):
    """A failed answer in a few words: the status and the start of the body, or the
    exception when no answer came (status 0)."""
    if response.status_code == 0:
        return f"no answer: {response.error!r}"
    return f"{response.status_code}: {response.text[:200]}"


class BrowserAdapter(LocustHttpAdapter):
    """Sends a request again, once, when the server closed the connection without a word of
    answer, as browsers do (RFC 9112, 9.3.1): gunicorn closes a kept-alive connection once
    it was idle for its ``keepalive`` (2 s), even when the next request is arriving on it
    at that moment. Each resend also counts as a request named ``RESENT``, so it shows."""

    def __init__(self, resent, *args, **kwargs):
        self.resent = resent
        super().__init__(*args, **kwargs)

    def send(self, request, *args, **kwargs):
        try:
            return super().send(request, *args, **kwargs)
        except NoAnswer as error:
            if not (error.args and isinstance(error.args[0], ProtocolError)):
                raise  # refused, timed out: no resend
            self.resent(request)
            return super().send(request, *args, **kwargs)


class Visitor(HttpUser):
    """What renters and miners share: signing in, and reading a page as a browser does."""

    abstract = True
    wait_time = between(1, 3)
    login_path = ""

    def on_start(self):
        self.client.mount("http://", BrowserAdapter(self.resent, pool_manager=self.pool_manager))

    def resent(self, request):
        self.environment.events.request.fire(
            request_type="RESENT", name="connection closed unanswered, sent again",
            response_time=0, response_length=0, exception=None, context={})

    def sign_in(self, name):
        self.csrf = self.form_token(self.login_path)
        with self.client.post(self.login_path, name=f"{self.login_path} (POST)",
                              data={"name": name, "password": CONFIG["password"],
                                    "csrf_token": self.csrf},
                              allow_redirects=False, catch_response=True) as response:
            if response.status_code != 302 or "login" in response.headers.get("Location", ""):
                response.failure(f"sign-in of {name}: {_why(response)}")

    def form_token(self, path):
        """The CSRF token of the form on ``path`` (a sign-in page)."""
        with self.client.get(path, catch_response=True) as response:
            match = CSRF_FIELD.search(response.text)
            if response.status_code != 200 or not match:
                response.failure(f"no sign-in form: {_why(response)}")
                return ""
            return match.group(1)

    def page(self, path, name=None, partial=None):
        """GET a page (``partial``: the htmx target asking for its refresh); its text, or
        None after recording a failure. Keeps the CSRF token a full page carries."""
        headers = {"HX-Request": "true", "HX-Target": partial} if partial else {}
        with self.client.get(path, name=name or path, headers=headers,
                             catch_response=True) as response:
            if response.status_code != 200:
                response.failure(_why(response))
                return None
            if "/login" in response.url:
                response.failure("sent to the sign-in page: the session was lost")
                return None
            match = CSRF_HEADER.search(response.text)
            if match:
                self.csrf = match.group(1)
            return response.text

    def api(self, method, path, name, expect, **kwargs):
        """An API call with this user's token; the JSON answer, or None after a failure."""
        with self.client.request(method, path, name=name, headers=self.bearer,
                                 catch_response=True, **kwargs) as response:
            if response.status_code != expect:
                response.failure(_why(response))
                return None
            return response.json() if response.content else {}


class RenterUser(Visitor):
    """One of the funded renters; even ones use the API, odd ones the pages."""

    login_path = "/login"

    def on_start(self):
        super().on_start()
        number = next(_renters)
        account = CONFIG["renters"][number % len(CONFIG["renters"])]
        self.name, self.bearer = account["name"], {"Authorization": f"Bearer {account['token']}"}
        self.through_api = number % 2 == 0
        self.active = None  # the id of the task this renter follows
        self.submitted = 0
        self.next_submit = time.monotonic() + random.uniform(0, PAUSE[1])
        self.sign_in(self.name)

    @task(3)
    def overview(self):
        self.page("/renter/")

    @task(3)
    def task_list(self):
        if self.page("/renter/tasks") is not None:
            self.page("/renter/tasks", name="/renter/tasks (htmx)", partial="task-table")

    @task(2)
    def machine_time(self):
        self.page("/renter/billing")
        if random.random() < 0.3:
            self.page("/renter/billing?page=2", name="/renter/billing?page=[n]")

    @task(1)
    def new_task_form(self):
        self.page("/renter/tasks/new")

    @task(1)
    def balance(self):
        self.api("GET", "/api/v1/account/balance", "/api/v1/account/balance", 200)

    @task(6)
    def work(self):
        """Follow the task in flight (deleting it once it ended), or submit the next."""
        if self.active is not None:
            self.follow()
        elif time.monotonic() >= self.next_submit:
            self.submit()

    def submit(self):
        self.submitted += 1
        name = f"{self.name}-{self.submitted}"
        if self.through_api:
            body = {"name": name, "image": CONFIG["image"], "argv": CONFIG["argv"],
                    "pool": CONFIG["pool"],
                    "subtasks": [{"role": "main", "spec": CONFIG["spec"], "replicas": 1}]}
            made = self.api("POST", "/api/v1/tasks", "/api/v1/tasks (POST)", 201, json=body)
            self.active = made and made["id"]
            return
        if self.page("/renter/tasks/new") is None:
            return
        form = {"csrf_token": self.csrf, "name": name, "image": CONFIG["image"],
                "command": "\n".join(CONFIG["argv"]), "env": "", "pool": CONFIG["pool"],
                "subtasks-0-role": "main", "subtasks-0-spec": CONFIG["spec"],
                "subtasks-0-replicas": "1"}
        with self.client.post("/renter/tasks", name="/renter/tasks (POST)", data=form,
                              allow_redirects=False, catch_response=True) as response:
            found = TASK_URL.search(response.headers.get("Location", ""))
            if response.status_code != 303 or not found:
                response.failure(_why(response))
                return
        self.active = int(found.group(1))
        self.page(f"/renter/tasks/{self.active}", name="/renter/tasks/[id]")

    def follow(self):
        task_id = self.active
        if self.through_api:
            found = self.api("GET", f"/api/v1/tasks/{task_id}", "/api/v1/tasks/[id]", 200)
            if found is None or found["state"] not in ENDED:
                return
            self.api("DELETE", f"/api/v1/tasks/{task_id}", "/api/v1/tasks/[id] (DELETE)", 204)
        else:
            text = self.page(f"/renter/tasks/{task_id}", name="/renter/tasks/[id] (htmx)",
                             partial="task-detail")
            if text is None or 'id="delete-task"' not in text:  # shown once it has ended
                return
            with self.client.post(f"/renter/tasks/{task_id}/delete", allow_redirects=False,
                                  name="/renter/tasks/[id]/delete (POST)",
                                  headers={"X-CSRFToken": self.csrf},
                                  catch_response=True) as response:
                if response.status_code != 303:
                    response.failure(_why(response))
                    return
        self.active = None
        self.next_submit = time.monotonic() + random.uniform(*PAUSE)
        self.page(f"/renter/billing?task={task_id}", name="/renter/billing?task=[id]")


class MinerUser(Visitor):
    """A miner reading what the renters make: records page by page, machine-time, nodes."""

    fixed_count = len(CONFIG["miners"])
    login_path = "/miner/login"

    def on_start(self):
        super().on_start()
        account = CONFIG["miners"][next(_miners) % len(CONFIG["miners"])]
        self.bearer = {"Authorization": f"Bearer {account['token']}"}
        self.sign_in(account["name"])

    @task(4)
    def records(self):
        """The Records page, then up to 5 older pages through its own links."""
        text = self.page("/miner/machine-time/records")
        for _ in range(random.randint(0, 5)):
            older = text and OLDER.search(text)
            if not older:
                return
            text = self.page(html.unescape(older.group(1)),
                             name="/miner/machine-time/records?before=[id]")

    @task(2)
    def records_api(self):
        """The ledger through the API, up to 5 pages of 100."""
        path = "/api/v1/billing/records"
        for _ in range(random.randint(1, 5)):
            found = self.api("GET", path, "/api/v1/billing/records", 200)
            if not found or not found["next_before_id"]:
                return
            path = f"/api/v1/billing/records?before_id={found['next_before_id']}"

    @task(2)
    def machine_time(self):
        self.page("/miner/machine-time")
        renters = self.renter_ids()
        if renters and random.random() < 0.5:
            self.page(f"/miner/machine-time?renter={random.choice(renters)}",
                      name="/miner/machine-time?renter=[id]")

    @task(1)
    def earnings(self):
        self.page("/miner/machine-time/earnings")

    @task(2)
    def nodes(self):
        self.page("/miner/nodes")
        self.page("/miner/nodes", name="/miner/nodes (htmx)", partial="node-table")
        nodes = self.api("GET", "/api/v1/nodes", "/api/v1/nodes", 200) or []
        if nodes:
            self.page(f"/miner/nodes/{nodes[0]['id']}", name="/miner/nodes/[id]")

    @task(2)
    def users(self):
        self.page("/miner/users")

    @task(1)
    def overview(self):
        self.page("/miner/")

    @task(1)
    def specs_and_pools(self):
        self.page("/miner/specs")
        self.page("/miner/pools")

    def renter_ids(self):
        if not getattr(self, "_renter_ids", None):
            found = self.api("GET", "/api/v1/billing/renters", "/api/v1/billing/renters", 200)
            self._renter_ids = [row["id"] for row in found or []]
        return self._renter_ids
