"""A stand-in for a lab's Grafana: a real HTTP server on 127.0.0.1 (Flask on a thread) that
answers the part of Grafana's documented HTTP API that Hourglass's provisioning uses, as
Grafana does, and checks every request as Grafana would, and more strictly where Hourglass
promises more.

- ``Authorization: Bearer <token>`` on every ``/api`` call but ``/api/health``; anything else
  is 401 ``{"message": "invalid API key"}``.
- Data sources: ``GET /api/datasources``, ``GET|PUT /api/datasources/uid/<uid>``,
  ``POST /api/datasources``; a body needs ``name``, ``type``, ``access`` (proxy or direct)
  and ``url``; a name or uid taken by another one is 409.
- Folders: ``GET /api/folders``, ``POST /api/folders`` (``title``; a taken uid is 409).
- Dashboards: ``POST /api/dashboards/db`` needs ``dashboard.uid`` and ``dashboard.title``,
  a boolean ``overwrite``, a ``folderUid`` that exists, panels with unique whole-number ids
  whose (and whose queries') data source uid exists, and a templating variable for every
  ``$name`` a query uses; a uid already there without ``overwrite`` is 412.
  ``GET /api/dashboards/uid/<uid>`` and ``GET /api/search`` read them back.

A refused body is 400 ``{"message": ...}`` as Grafana's are. ``received`` lists every
request as ``(method, path, body)``; ``fail(status)`` makes every ``/api`` call answer that
status and ``slow(seconds)`` holds every answer, until ``heal()``.
"""

import re
import threading
import time

from flask import Flask, jsonify, request
from werkzeug.serving import make_server

BUILT_IN = re.compile(r"\$__\w+")  # Grafana's own variables ($__rate_interval, ...)
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)")


class Refused(Exception):
    """A request Grafana would refuse: ``status`` and its message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def slug(title):
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


class FakeGrafana:
    """Listens at ``url`` until ``stop()``; accepts the service-account token ``token``."""

    def __init__(self, token="glsa_fake_service_account_token_0123456789"):
        self.token = token
        self.received = []
        self.datasources = {}  # uid: the data source as Grafana keeps it
        self.folders = {}  # uid: folder
        self.dashboards = {}  # uid: {"dashboard", "folderUid", "version"}
        self.failure = None
        self.delay = 0.0
        self._ids = iter(range(1, 1_000_000))
        self._lock = threading.Lock()
        self.app = self._routes()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fail(self, status=500):
        self.failure = status

    def slow(self, seconds):
        self.delay = seconds

    def heal(self):
        self.failure, self.delay = None, 0.0

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def paths(self, method=None):
        """The paths requested (with ``method`` only)."""
        return [path for verb, path, _body in self.received if method in (None, verb)]

    # --- the API ---------------------------------------------------------------------------

    def _routes(self):
        app = Flask(__name__)
        app.before_request(self._check)
        app.register_error_handler(Refused, lambda exc: (jsonify(message=str(exc)), exc.status))
        app.register_error_handler(404, lambda exc: (jsonify(message="Not found"), 404))
        app.register_error_handler(405, lambda exc: (jsonify(message="Method not allowed"), 405))
        for rule, view, methods in [
            ("/api/health", self.health, ["GET"]),
            ("/api/datasources", self.list_datasources, ["GET"]),
            ("/api/datasources", self.add_datasource, ["POST"]),
            ("/api/datasources/uid/<uid>", self.get_datasource, ["GET"]),
            ("/api/datasources/uid/<uid>", self.update_datasource, ["PUT"]),
            ("/api/folders", self.list_folders, ["GET"]),
            ("/api/folders", self.add_folder, ["POST"]),
            ("/api/dashboards/db", self.save_dashboard, ["POST"]),
            ("/api/dashboards/uid/<uid>", self.get_dashboard, ["GET"]),
            ("/api/search", self.search, ["GET"]),
        ]:
            app.add_url_rule(rule, view.__name__, view, methods=methods)
        return app

    def _check(self):
        body = request.get_json(silent=True) if request.data else None
        with self._lock:
            self.received.append((request.method, request.path, body))
        if self.delay:
            time.sleep(self.delay)
        if self.failure:
            return jsonify(message="Internal Server Error"), self.failure
        if request.path != "/api/health" and (
                request.headers.get("Authorization") != f"Bearer {self.token}"):
            return jsonify(message="invalid API key"), 401
        if request.method in ("POST", "PUT") and not isinstance(body, dict):
            raise Refused(400, "bad request data")
        return None

    def health(self):
        return jsonify(commit="fake", database="ok", version="11.3.0")

    def list_datasources(self):
        return jsonify(list(self.datasources.values()))

    def get_datasource(self, uid):
        if uid not in self.datasources:
            raise Refused(404, "Data source not found")
        return jsonify(self.datasources[uid])

    def _datasource(self, body, uid, number):
        for field in ("name", "type", "access", "url"):
            if not isinstance(body.get(field), str) or not body[field]:
                raise Refused(400, f"bad request data: {field} is required")
        if body["access"] not in ("proxy", "direct"):
            raise Refused(400, "bad request data: access must be proxy or direct")
        if any(other["name"] == body["name"] and other["uid"] != uid
               for other in self.datasources.values()):
            raise Refused(409, "data source with the same name already exists")
        old = self.datasources.get(uid, {})
        self.datasources[uid] = {
            "id": number, "uid": uid, "orgId": 1, "name": body["name"], "type": body["type"],
            "access": body["access"], "url": body["url"],
            "isDefault": bool(body.get("isDefault", False)),
            "jsonData": body.get("jsonData") or {}, "readOnly": False,
            "version": old.get("version", 0) + 1,
        }
        return self.datasources[uid]

    def add_datasource(self):
        body = request.get_json()
        uid = body.get("uid") or f"ds{len(self.datasources) + 1}"
        with self._lock:
            if uid in self.datasources:
                raise Refused(409, "data source with the same uid already exists")
            source = self._datasource(body, uid, next(self._ids))
        return jsonify(datasource=source, id=source["id"], message="Datasource added",
                       name=source["name"])

    def update_datasource(self, uid):
        body = request.get_json()
        with self._lock:
            if uid not in self.datasources:
                raise Refused(404, "Data source not found")
            if body.get("uid", uid) != uid:
                raise Refused(400, "bad request data: the uid may not change")
            source = self._datasource(body, uid, self.datasources[uid]["id"])
        return jsonify(datasource=source, id=source["id"], message="Datasource updated",
                       name=source["name"])

    def list_folders(self):
        return jsonify([{"id": f["id"], "uid": f["uid"], "title": f["title"]}
                        for f in self.folders.values()])

    def add_folder(self):
        body = request.get_json()
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            raise Refused(400, "folder title cannot be empty")
        uid = body.get("uid") or f"f{len(self.folders) + 1}"
        with self._lock:
            if uid in self.folders:
                raise Refused(409, "a folder with the same uid already exists")
            folder = {"id": next(self._ids), "uid": uid, "title": title,
                      "url": f"/dashboards/f/{uid}/{slug(title)}", "version": 1}
            self.folders[uid] = folder
        return jsonify(folder)

    def save_dashboard(self):
        body = request.get_json()
        board = body.get("dashboard")
        if not isinstance(board, dict):
            raise Refused(400, "bad request data: dashboard is required")
        for field in ("uid", "title"):
            if not isinstance(board.get(field), str) or not board[field].strip():
                raise Refused(400, f"bad request data: dashboard.{field} is required")
        if not isinstance(body.get("overwrite"), bool):
            raise Refused(400, "bad request data: overwrite must be true or false")
        folder = body.get("folderUid", "")
        with self._lock:
            if folder and folder not in self.folders:
                raise Refused(400, "folder not found")
            self._check_panels(board)
            uid = board["uid"]
            old = self.dashboards.get(uid)
            if old and not body["overwrite"]:
                raise Refused(412, "A dashboard with the same uid already exists")
            version = old["version"] + 1 if old else 1
            number = old["dashboard"]["id"] if old else next(self._ids)
            self.dashboards[uid] = {"dashboard": {**board, "id": number, "version": version},
                                    "folderUid": folder, "version": version}
        return jsonify(id=number, uid=uid, url=f"/d/{uid}/{slug(board['title'])}",
                       status="success", version=version, slug=slug(board["title"]))

    def _check_panels(self, board):
        panels = board.get("panels", [])
        ids = [panel.get("id") for panel in panels]
        if not all(isinstance(number, int) and number > 0 for number in ids) or (
                len(set(ids)) != len(ids)):
            raise Refused(400, "bad request data: every panel needs an id of its own")
        variables = {variable.get("name") for variable in
                     board.get("templating", {}).get("list", [])}
        for panel in panels:
            for holder in [panel, *panel.get("targets", [])]:
                source = holder.get("datasource", {}).get("uid")
                if source not in self.datasources:
                    raise Refused(400, f"panel {panel['id']}: no data source {source!r}")
            for target in panel.get("targets", []):
                for plain, braced in VARIABLE.findall(BUILT_IN.sub("", target.get("expr", ""))):
                    if (plain or braced) not in variables:
                        raise Refused(400, f"panel {panel['id']}: no variable {plain or braced}")

    def get_dashboard(self, uid):
        if uid not in self.dashboards:
            raise Refused(404, "Dashboard not found")
        kept = self.dashboards[uid]
        return jsonify(dashboard=kept["dashboard"],
                       meta={"folderUid": kept["folderUid"], "version": kept["version"],
                             "slug": slug(kept["dashboard"]["title"])})

    def search(self):
        wanted = request.args.get("query", "").lower()
        return jsonify([
            {"uid": uid, "title": kept["dashboard"]["title"], "type": "dash-db",
             "folderUid": kept["folderUid"],
             "url": f"/d/{uid}/{slug(kept['dashboard']['title'])}"}
            for uid, kept in self.dashboards.items()
            if wanted in kept["dashboard"]["title"].lower()])
