"""A Livy-protocol server: the REST calls sparkmagic makes (Livy 0.8's interactive sessions),
each session a real PySpark driver started with ``spark-submit`` (tests/livy/repl.py).

Implemented, with Livy 0.8's JSON shapes (tests/livy/shapes/ holds them as Livy's REST API
documentation gives them; tests/test_livy_standin.py compares):

- ``POST /sessions`` (201; ``kind``, ``conf``, ``name``, ``driverMemory``,
  ``executorMemory``, ``executorCores``, ``numExecutors``, ``jars``, ``pyFiles``, ``queue``,
  ``heartbeatTimeoutInSecond`` accepted), ``GET /sessions``, ``GET /sessions/{id}``,
  ``GET /sessions/{id}/state``, ``GET /sessions/{id}/log?from=&size=``,
  ``DELETE /sessions/{id}`` (200, then 404);
- ``POST /sessions/{id}/statements`` (201), ``GET /sessions/{id}/statements[/{sid}]``,
  ``POST /sessions/{id}/statements/{sid}/cancel`` (a waiting statement only);
- session states ``starting`` → ``idle`` ⇄ ``busy`` → ``shutting_down`` → ``dead`` (or ``dead``
  when the driver ends by itself, ``error`` when it never started); statement states
  ``waiting`` → ``running`` → ``available``.

Where it differs from Livy 0.8 (documented in docs/emr.md too):

- the driver talks to the server over HTTP on loopback (Livy: its RPC, RSC); one statement at a
  time per session, in order (as Livy's Python interpreter runs them);
- kinds other than ``pyspark`` are refused (400); no ``shared`` or ``sql`` statements;
- no authentication, impersonation, CSRF header check, session recovery or TTL; the heartbeat
  timeout is accepted and not enforced;
- a running statement cannot be cancelled (Livy interrupts the job group);
- ``progress`` is 0 until the statement is available, then 1;
- a failing magic answers ``status: error`` (Livy 0.8 wraps it in an ``ok`` answer without
  ``text/plain``, which sparkmagic then reports as an internal error).
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

REPL = Path(__file__).with_name("repl.py")
#: session fields Livy accepts that become spark-submit options
_SUBMIT_OPTIONS = {
    "driverMemory": "--driver-memory",
    "executorMemory": "--executor-memory",
    "executorCores": "--executor-cores",
    "numExecutors": "--num-executors",
    "queue": "--queue",
}


@dataclass
class Statement:
    id: int
    code: str
    state: str = "waiting"
    output: dict | None = None
    started: int = 0
    completed: int = 0

    def view(self) -> dict:
        return {"id": self.id, "code": self.code, "state": self.state, "output": self.output,
                "progress": 1.0 if self.state == "available" else 0.0,
                "started": self.started, "completed": self.completed}  # fmt: skip


@dataclass
class Session:
    id: int
    request: dict
    state: str = "starting"
    app_id: str | None = None
    spark_ui: str | None = None
    log: list[str] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)
    pending: queue.Queue = field(default_factory=queue.Queue)
    process: subprocess.Popen | None = None
    stopping: bool = False

    def view(self) -> dict:
        request = self.request
        return {
            "id": self.id,
            "name": request.get("name"),
            "appId": self.app_id,
            "owner": None,
            "proxyUser": None,
            "state": self.state,
            "kind": request.get("kind", "pyspark"),
            "appInfo": {"driverLogUrl": None, "sparkUiUrl": self.spark_ui},
            "log": self.log[-10:],
            "ttl": None,
            "driverMemory": request.get("driverMemory"),
            "driverCores": request.get("driverCores", 0),
            "executorMemory": request.get("executorMemory"),
            "executorCores": request.get("executorCores", 0),
            "conf": request.get("conf", {}),
            "archives": request.get("archives", []),
            "files": request.get("files", []),
            "heartbeatTimeoutInSecond": request.get("heartbeatTimeoutInSecond", 0),
            "jars": request.get("jars", []),
            "numExecutors": request.get("numExecutors", 0),
            "pyFiles": request.get("pyFiles", []),
            "queue": request.get("queue"),
        }


class LivyServer:
    """The server on 127.0.0.1; ``spark_submit`` and ``env`` start each session's driver in
    ``deploy_mode`` (``cluster``: in a YARN container; ``client``: here)."""

    def __init__(self, spark_submit: str, env: dict[str, str], deploy_mode: str, workdir: Path):
        self.spark_submit = spark_submit
        self.env = env
        self.deploy_mode = deploy_mode
        self.workdir = workdir
        self.sessions: dict[int, Session] = {}
        #: (method, path, status, request body, answer body) of every call, for the tests
        self.requests: list[tuple[str, str, int, dict, dict | None]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LivyServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _answer(self, status: int, body: dict | None, asked: dict | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if not self.path.startswith("/_driver/"):
                    owner.requests.append((self.command, self.path, status, asked or {}, body))

            def _body(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                return json.loads(raw) if raw.strip() else {}

            def do_GET(self) -> None:
                self._answer(*owner.route("GET", self.path, None))

            def do_POST(self) -> None:
                asked = self._body()
                self._answer(*owner.route("POST", self.path, asked), asked)

            def do_DELETE(self) -> None:
                self._answer(*owner.route("DELETE", self.path, None))

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for session in list(self.sessions.values()):
            self._end(session)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- routes -----------------------------------------------------------------------------

    def route(self, method: str, path: str, body: dict | None) -> tuple[int, dict | None]:
        url = urlparse(path)
        parts = [p for p in url.path.split("/") if p]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if parts[:1] == ["_driver"]:
            return self._driver(method, parts[1:], body)
        if parts[:1] != ["sessions"]:
            return 404, {"msg": f"no route {url.path}"}
        if len(parts) == 1:
            if method == "GET":
                return 200, self._list(query)
            if method == "POST":
                return self._create(body or {})
            return 405, {"msg": "method not allowed"}
        session = self._find(parts[1])
        if session is None:
            return 404, {"msg": f"Session '{parts[1]}' not found."}
        rest = parts[2:]
        if not rest:
            if method == "GET":
                return 200, session.view()
            if method == "DELETE":
                if session.state in ("dead", "killed", "error", "success"):
                    return 404, {"msg": f"Session {session.id} already stopped."}
                threading.Thread(target=self._end, args=(session,), daemon=True).start()
                return 200, {"msg": "deleted"}
        if rest == ["state"] and method == "GET":
            return 200, {"id": session.id, "state": session.state}
        if rest == ["log"] and method == "GET":
            return 200, self._log(session, query)
        if rest[:1] == ["statements"]:
            return self._statements(method, session, rest[1:], body or {}, query)
        return 404, {"msg": f"no route {url.path}"}

    def _find(self, key: str) -> Session | None:
        if key.isdigit():
            return self.sessions.get(int(key))
        return next((s for s in self.sessions.values() if s.request.get("name") == key), None)

    def _list(self, query: dict) -> dict:
        start, size = int(query.get("from", 0)), int(query.get("size", 100))
        views = [s.view() for s in sorted(self.sessions.values(), key=lambda s: s.id)]
        return {"from": start, "total": len(views), "sessions": views[start : start + size]}

    def _log(self, session: Session, query: dict) -> dict:
        size = int(query.get("size", 100))
        total = len(session.log)
        start = int(query["from"]) if "from" in query else max(0, total - size)
        lines = session.log[start:] if size < 0 else session.log[start : start + size]
        return {"id": session.id, "from": start, "total": total, "log": lines}

    def _create(self, request: dict) -> tuple[int, dict]:
        kind = request.get("kind", "pyspark")
        if kind != "pyspark":
            return 400, {"msg": f"this server runs pyspark sessions only, not {kind!r}"}
        with self._lock:
            name = request.get("name")
            if name and any(s.request.get("name") == name for s in self.sessions.values()):
                return 400, {"msg": f"Duplicate session name: {name}"}
            session = Session(id=len(self.sessions), request=request)
            self.sessions[session.id] = session
        self._launch(session)
        return 201, session.view()

    def _statements(
        self, method: str, session: Session, rest: list[str], body: dict, query: dict
    ) -> tuple[int, dict]:
        if not rest:
            if method == "GET":
                start, size = int(query.get("from", 0)), int(query.get("size", 100))
                views = [s.view() for s in session.statements]
                return 200, {"total_statements": len(views),
                             "statements": views[start : start + size]}  # fmt: skip
            if method == "POST":
                if session.state not in ("starting", "idle", "busy"):
                    return 400, {"msg": f"Session {session.id} is in state {session.state}"}
                if "code" not in body:
                    return 400, {"msg": "Rejected, Reason: code is required"}
                with self._lock:
                    statement = Statement(id=len(session.statements), code=body["code"])
                    session.statements.append(statement)
                session.pending.put(statement)
                return 201, statement.view()
        if not rest[0].isdigit() or int(rest[0]) >= len(session.statements):
            return 404, {"msg": f"Statement not found: {rest[0]}"}
        statement = session.statements[int(rest[0])]
        if rest[1:] == ["cancel"] and method == "POST":
            if statement.state == "waiting":
                statement.state = "cancelled"
            return 200, {"msg": "canceled"}
        if not rest[1:] and method == "GET":
            return 200, statement.view()
        return 404, {"msg": "no route"}

    # -- the driver's side --------------------------------------------------------------------

    def _driver(self, method: str, parts: list[str], body: dict | None) -> tuple[int, dict | None]:
        session = self.sessions.get(int(parts[0])) if parts and parts[0].isdigit() else None
        if session is None:
            return 404, {"msg": "no such session"}
        what = parts[1:]
        if what == ["started"] and method == "POST":
            session.app_id, session.spark_ui = body.get("appId"), body.get("sparkUiUrl")
            session.log.append(f"driver started: {session.app_id}")
            if not session.stopping:
                session.state = "idle"
            return 200, {}
        if what == ["next"] and method == "GET":
            return 200, self._next(session)
        if what[:1] == ["statements"] and method == "POST":
            statement = session.statements[int(what[1])]
            statement.output, statement.state = body, "available"
            statement.completed = int(time.time() * 1000)
            if session.state == "busy" and session.pending.empty():
                session.state = "idle"
            return 200, {}
        return 404, {"msg": "no route"}

    def _next(self, session: Session) -> dict | None:
        """The next statement for the driver (waits up to 20 s for one), or a stop."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if session.stopping:
                return {"stop": True}
            try:
                statement = session.pending.get(timeout=0.5)
            except queue.Empty:
                continue
            if statement.state == "cancelled":
                continue
            statement.state, statement.started = "running", int(time.time() * 1000)
            session.state = "busy"
            return {"id": statement.id, "code": statement.code}
        return None

    def _launch(self, session: Session) -> None:
        request = session.request
        name = request.get("name") or f"livy-session-{session.id}"
        command = [self.spark_submit, "--master", "yarn", "--deploy-mode", self.deploy_mode,
                   "--name", name]  # fmt: skip
        for key, option in _SUBMIT_OPTIONS.items():
            if request.get(key) not in (None, 0, ""):
                command += [option, str(request[key])]
        for key in ("jars", "pyFiles", "files", "archives"):
            if request.get(key):
                option = {"pyFiles": "--py-files"}.get(key, f"--{key}")
                command += [option, ",".join(request[key])]
        for key, value in (request.get("conf") or {}).items():
            command += ["--conf", f"{key}={value}"]
        command += [str(REPL), self.url, str(session.id)]
        log_path = self.workdir / f"session-{session.id}.log"
        log_file = log_path.open("w")
        session.process = subprocess.Popen(
            command, env=self.env, cwd=self.workdir, stdout=log_file, stderr=subprocess.STDOUT
        )
        session.log.append(f"spark-submit --deploy-mode {self.deploy_mode} ({name})")
        threading.Thread(target=self._watch, args=(session, log_path), daemon=True).start()

    def _watch(self, session: Session, log_path: Path) -> None:
        """Follow the driver's submission: its log lines become the session's log; when it ends
        the session is dead (or in error, if it never started)."""
        code = session.process.wait()
        lines = log_path.read_text(errors="replace").splitlines()
        app = next((m.group(0) for s in lines for m in [re.search(r"application_\d+_\d+", s)]
                    if m), None)  # fmt: skip
        session.app_id = session.app_id or app
        session.log.extend(lines[-200:])
        if session.state == "starting" and not session.stopping:
            session.state = "error"
        else:
            session.state = "dead"
        session.log.append(f"driver ended with exit code {code}")

    def _end(self, session: Session, timeout_s: float = 120) -> None:
        """Stop a session: the driver leaves its loop and stops Spark; killed if it hangs."""
        if session.process is None or session.process.poll() is not None:
            session.state = "dead"
            return
        session.stopping = True
        session.state = "shutting_down"
        try:
            session.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:  # (its YARN application ends with the cluster)
            session.process.kill()
