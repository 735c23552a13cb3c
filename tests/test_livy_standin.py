"""The Livy-protocol stand-in (tests/livy/) answers as Livy 0.8 does: its Python interpreter's
outputs, checked here without Spark against the shapes Livy's REST API documents
(tests/livy/shapes/); the sessions themselves run on YARN in test_emr_rehearsal.py, whose
recorded answers are compared with the same shapes."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest

from tests.livy import repl, same_shape, shape
from tests.livy.server import LivyServer


@pytest.mark.parametrize("name", ["statement_ok", "statement_error", "statement_table",
                                  "statement_json"])  # fmt: skip
def test_the_interpreter_answers_as_livy_documents(name):
    expected = shape(name)
    answer = repl.Interpreter({}).execute(expected["code"], expected["id"])
    if name == "statement_error":
        assert {k: answer[k] for k in ("status", "ename", "evalue")} == {
            k: expected["output"][k] for k in ("status", "ename", "evalue")}  # fmt: skip
        # the traceback starts at the statement's own frame (none of the interpreter's)
        assert answer["traceback"][0] == "Traceback (most recent call last):\n"
        assert 'File "<stdin>", line 1' in answer["traceback"][1]
        assert answer["traceback"][-1] == expected["output"]["traceback"][-1]
    else:
        assert answer == expected["output"]


def test_matplot_answers_the_current_figure_as_png():
    import matplotlib

    matplotlib.use("Agg")
    namespace: dict = {}
    interpreter = repl.Interpreter(namespace)
    interpreter.execute("import matplotlib.pyplot as plt", 0)
    answer = interpreter.execute(shape("statement_matplot")["code"], 2)
    same_shape(answer, shape("statement_matplot")["output"])
    assert base64.b64decode(answer["data"]["image/png"])[:4] == b"\x89PNG"
    assert "text/plain" not in answer["data"]  # nothing printed: image/png only, as in Livy
    printed = interpreter.execute("print('k = 3')\n%matplot plt", 3)
    assert printed["data"]["text/plain"] == "k = 3" and "image/png" in printed["data"]


def test_a_statement_keeps_its_namespace_and_prints_the_last_value():
    interpreter = repl.Interpreter({})
    assert interpreter.execute("x = 20", 0)["data"] == {"text/plain": ""}
    assert interpreter.execute("print('x is', x)\nx * 2 + 2", 1)["data"] == {
        "text/plain": "x is 20\n42"}  # fmt: skip
    assert interpreter.execute("None", 2)["data"] == {"text/plain": ""}


def test_unknown_magic_and_syntax_error_are_errors():
    interpreter = repl.Interpreter({})
    unknown = interpreter.execute("x = 1\n%nothing x", 0)
    assert (unknown["status"], unknown["ename"]) == ("error", "UnknownMagic")
    broken = interpreter.execute("def f(:", 1)
    assert (broken["status"], broken["ename"]) == ("error", "SyntaxError")


def test_primary_only_packages_are_absent_from_the_driver():
    """In cluster mode the driver runs on a core node: no IPython or notebook packages."""
    finder = repl._CoreNode()
    for name in ("IPython", "IPython.display", "ipywidgets", "papermill"):
        with pytest.raises(ModuleNotFoundError):
            finder.find_spec(name)
    assert finder.find_spec("matplotlib") is None  # everything else as installed


def _call(url: str, method: str = "GET", body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"},
                                     method=method)  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_the_server_answers_livys_statuses_without_a_session(tmp_path):
    server = LivyServer("spark-submit", {}, "cluster", tmp_path).start()
    try:
        status, listing = _call(server.url + "/sessions")
        assert status == 200 and listing == {"from": 0, "total": 0, "sessions": []}
        assert _call(server.url + "/sessions/7")[0] == 404
        assert _call(server.url + "/sessions/7/statements", "POST", {"code": "1"})[0] == 404
        refused = _call(server.url + "/sessions", "POST", {"kind": "spark"})
        assert refused[0] == 400 and "pyspark" in refused[1]["msg"]
    finally:
        server.stop()
