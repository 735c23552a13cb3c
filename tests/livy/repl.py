"""The driver side of a Livy session, as Livy's Python interpreter behaves (Livy 0.8's
``fake_shell.py``, re-implemented from its documented behaviour, not copied): run as the
primary resource of ``spark-submit`` in the deploy mode the cluster's Livy uses, it creates the
session's ``spark`` and ``sc``, then asks the server (tests/livy/server.py) for statements and
answers each one the way Livy does:

- the code runs in one namespace per session; every statement but the last in ``exec`` mode,
  the last in interactive (``single``) mode, so a trailing expression's repr is printed;
- ``text/plain`` is what was printed, then stderr, trailing whitespace removed;
- when the code is not valid Python as a whole, lines starting with ``%`` are Livy's magics:
  ``%table NAME`` (``application/vnd.livy.table.v1+json``), ``%json NAME``
  (``application/json``), ``%matplot NAME`` (``NAME.gcf()`` as a base64 PNG, ``image/png``);
- an exception is ``status: error`` with ``ename``, ``evalue`` and the traceback's lines from
  the statement's own frames.

Standalone on purpose (it runs in a YARN container, from the file spark-submit ships): only
the standard library and pyspark.
"""

from __future__ import annotations

import ast
import base64
import builtins
import datetime
import decimal
import importlib.abc
import io
import json
import sys
import time
import traceback
import urllib.error
import urllib.request

#: Packages only the primary node's environment has (the bootstrap's primary-only packages and
#: what they bring); in cluster mode the driver runs on a core node, where they are absent.
PRIMARY_ONLY = ("IPython", "ipykernel", "ipywidgets", "papermill", "jupyter_client", "nbclient",
                "nbformat", "comm", "traitlets")  # fmt: skip


class _CoreNode(importlib.abc.MetaPathFinder):
    """Imports of primary-only packages fail as on a core node (ModuleNotFoundError)."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in PRIMARY_ONLY:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def _post(url: str, body: dict) -> None:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    urllib.request.urlopen(request, timeout=60).read()


def _next(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=60) as answer:
            body = answer.read()
    except urllib.error.URLError:
        time.sleep(1)
        return None
    return json.loads(body) if body else None


class Interpreter:
    """One session's namespace and its statement counter."""

    def __init__(self, namespace: dict):
        self.namespace = namespace

    def execute(self, code: str, count: int) -> dict:
        stdout, stderr = io.StringIO(), io.StringIO()
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = stdout, stderr
        try:
            result = self._run(code)
        except _Failed as failed:
            return {"status": "error", "execution_count": count, **failed.content}
        finally:
            sys.stdout, sys.stderr = saved
        if result.get("status") == "error":
            return {"execution_count": count, **result}
        text = (result.pop("text/plain", "") + stdout.getvalue() + stderr.getvalue()).rstrip()
        if text or not result:
            result["text/plain"] = text
        return {"status": "ok", "execution_count": count, "data": result}

    def _run(self, code: str) -> dict:
        try:
            ast.parse(code)
            chunks = [("code", code)]
        except SyntaxError as err:
            chunks = _chunks(code)
            if all(kind == "code" for kind, _ in chunks):
                raise _Failed(_error(type(err), err, None)) from None
        result: dict = {}
        for kind, text in chunks:
            result = self._magic(text) if kind == "magic" else self._code(text)
            if result.get("status") == "error":
                return result
        return result

    def _code(self, code: str) -> dict:
        try:
            tree = ast.parse(code, "<stdin>")
        except SyntaxError as err:
            raise _Failed(_error(type(err), err, None)) from None
        try:
            for node in tree.body[:-1]:
                exec(compile(ast.Module([node], []), "<stdin>", "exec"), self.namespace)
            for node in tree.body[-1:]:
                exec(compile(ast.Interactive([node]), "<stdin>", "single"), self.namespace)
        except Exception as err:  # the user's code: any exception is the statement's answer
            raise _Failed(_error(type(err), err, err.__traceback__)) from None
        return {}

    def _magic(self, line: str) -> dict:
        name, _, argument = line[1:].strip().partition(" ")
        handler = {"table": _table, "json": _json, "matplot": _matplot}.get(name)
        if handler is None:
            error = ValueError(f"unknown magic command '{name}'")
            return {"status": "error", **_error(type(error), error, None, ename="UnknownMagic")}
        try:
            value = self.namespace[argument.strip()]
        except KeyError:
            error = NameError(f"name '{argument.strip()}' is not defined")
            return {"status": "error", **_error(type(error), error, None)}
        return handler(value)


class _Failed(Exception):
    def __init__(self, content: dict):
        super().__init__(content["evalue"])
        self.content = content


def _chunks(code: str) -> list[tuple[str, str]]:
    """Runs of code between magic lines (lines starting with ``%``), in order."""
    chunks: list[tuple[str, str]] = []
    lines: list[str] = []
    for line in code.split("\n"):
        if line.startswith("%"):
            if any(s.strip() for s in lines):
                chunks.append(("code", "\n".join(lines)))
            lines = []
            chunks.append(("magic", line))
        else:
            lines.append(line)
    if any(s.strip() for s in lines):
        chunks.append(("code", "\n".join(lines)))
    return chunks


def _error(kind: type, error: BaseException, tb, ename: str | None = None) -> dict:
    """Livy's error answer: the traceback from the statement's own frames on."""
    lines = traceback.format_exception(kind, error, tb, chain=False)
    if tb is not None:  # drop this interpreter's frames: keep the header, then <stdin>'s
        start = next((i for i, s in enumerate(lines) if 'File "<stdin>"' in s), 1)
        lines = lines[:1] + lines[start:]
    return {"ename": ename or kind.__name__, "evalue": str(error), "traceback": lines}


def _table(value) -> dict:
    rows = value if isinstance(value, list) else [value]
    rows = [r.asDict() if hasattr(r, "asDict") else r for r in rows]
    if rows and isinstance(rows[0], dict):
        names = sorted({k for r in rows for k in r})
        data = [[r.get(k) for k in names] for r in rows]
    else:
        data = [list(r) if isinstance(r, (list, tuple)) else [r] for r in rows]
        names = [str(i) for i in range(max((len(r) for r in data), default=0))]
    types = []
    for column in range(len(names)):
        kinds = {_type(r[column]) for r in data if column < len(r)} - {"NULL_TYPE"}
        if len(kinds) > 1:
            error = TypeError("table rows have different types")
            return {"status": "error", **_error(type(error), error, None)}
        types.append(kinds.pop() if kinds else "NULL_TYPE")
    data = [[_cell(v) for v in r] for r in data]
    headers = [{"name": n, "type": t} for n, t in zip(names, types)]
    return {"application/vnd.livy.table.v1+json": {"headers": headers, "data": data}}


#: Livy's table column types, by Python type (bool before int: a bool is an int)
_TYPES = ((bool, "BOOLEAN_TYPE"), (int, "INT_TYPE"), (float, "DOUBLE_TYPE"), (str, "STRING_TYPE"),
          (datetime.datetime, "TIMESTAMP_TYPE"), (datetime.date, "DATE_TYPE"),
          (decimal.Decimal, "DECIMAL_TYPE"), (list, "ARRAY_TYPE"), (tuple, "ARRAY_TYPE"),
          (dict, "MAP_TYPE"))  # fmt: skip


def _type(value) -> str:
    if value is None:
        return "NULL_TYPE"
    return next((name for kind, name in _TYPES if isinstance(value, kind)), "STRING_TYPE")


def _cell(value):
    if isinstance(value, (datetime.date, decimal.Decimal)):
        return str(value)
    return value


def _json(value) -> dict:
    return {"application/json": value}


def _matplot(value) -> dict:
    figure = value.gcf()
    png = io.BytesIO()
    figure.savefig(png, format="png")
    return {"image/png": base64.b64encode(png.getvalue()).decode("ascii"), "text/plain": ""}


def main(server: str, session_id: str) -> int:
    sys.meta_path.insert(0, _CoreNode())
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()
    sc = spark.sparkContext
    base = f"{server.rstrip('/')}/_driver/{session_id}"
    _post(base + "/started", {"appId": sc.applicationId, "sparkUiUrl": sc.uiWebUrl})
    namespace = {"__name__": "__main__", "__builtins__": builtins, "spark": spark, "sc": sc}
    interpreter = Interpreter(namespace)
    while True:
        work = _next(base + "/next")
        if not work:
            continue
        if work.get("stop"):
            break
        answer = interpreter.execute(work["code"], work["id"])
        _post(f"{base}/statements/{work['id']}", answer)
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
