"""Python functions as Lambda users write them: `--runtime python3 --handler
MODULE.FUNCTION` over a .py file or a zip laid out as a Lambda package, run by
spate's own runtime client (runtimes/python3/bootstrap) as an exec function."""
import json
import os
import signal

import pytest

from conftest import invoke_event, wait_for, zipped

APP = b'''
import json
import os
import sys

COUNT = 0


def handler(event, context):
    global COUNT
    COUNT += 1
    what = event.get("what") if isinstance(event, dict) else None
    if what == "fail":
        raise ValueError("bad input: %s" % event.get("why"))
    if what == "print":
        print("hello from", context.aws_request_id)
        print("to stderr", file=sys.stderr)
        return {"printed": True}
    if what == "env":
        return {k: os.environ.get(k) for k in event["keys"]}
    if what == "sleep":
        import time
        time.sleep(event["s"])
        return "slept"
    if what == "unserialisable":
        return {"x": object()}
    return {
        "event": event,
        "count": COUNT,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "log_group": context.log_group_name,
        "log_stream": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
    }
'''


def deploy_py(d, name, artifact, handler="app.handler", **params):
    params = dict(runtime="python3", handler=handler, **params)
    return d.deploy(name, artifact, **params)


def test_a_handler_file_is_deployed_and_invoked(spated):
    d = spated
    status, doc = deploy_py(d, "py", APP, timeout=5000)
    assert status == 201, doc
    assert doc["config"]["runtime"] == "python3"
    assert doc["config"]["handler"] == "app.handler"
    assert d.describe("py")["config"]["handler"] == "app.handler"
    status, rid, body = invoke_event(d, "py", {"a": [1, 2], "b": "x"})
    assert status == 200, body
    out = json.loads(body)
    assert out["event"] == {"a": [1, 2], "b": "x"}
    assert out["request_id"] == rid
    assert out["function_name"] == "py" and out["function_version"] == "1"
    assert out["arn"] == "arn:aws:lambda:us-east-1:000000000000:function:py"
    assert out["memory"] == "128"
    assert out["log_group"] == "/aws/lambda/py"
    assert out["log_stream"]
    assert 0 < out["remaining"] <= 5000
    # The module is imported once per instance: its globals live on.
    assert json.loads(invoke_event(d, "py", {})[2])["count"] >= 2
    # os.environ: the function's variables and Lambda's.
    status, doc = deploy_py(d, "py", APP, env="GREETING%3Dhi")
    assert status == 200, doc
    status, _, body = invoke_event(d, "py", {"what": "env", "keys": [
        "GREETING", "_HANDLER", "LAMBDA_TASK_ROOT", "AWS_LAMBDA_FUNCTION_NAME"]})
    assert json.loads(body) == {"GREETING": "hi", "_HANDLER": "app.handler",
                                "LAMBDA_TASK_ROOT": "/var/task", "AWS_LAMBDA_FUNCTION_NAME": "py"}
    # The CLI: spate invoke, and status shows the handler.
    r = d.cli("invoke", "py", '{"what": "env", "keys": ["GREETING"]}')
    assert r.returncode == 0 and json.loads(r.stdout) == {"GREETING": "hi"}, r
    r = d.cli("status", "py")
    assert r.returncode == 0 and b"handler app.handler" in r.stdout, r.stdout


def test_an_exception_is_a_function_error_naming_its_type(spated):
    d = spated
    assert deploy_py(d, "py", APP)[0] == 201
    status, _, body = invoke_event(d, "py", {"what": "fail", "why": "no name"})
    assert status == 502, body
    doc = json.loads(body)
    assert doc["code"] == "function_error"
    assert doc["error"].startswith("ValueError: bad input: no name"), doc
    status, _, body = invoke_event(d, "py", {"what": "unserialisable"})
    assert status == 502 and "Runtime.MarshalError" in json.loads(body)["error"], body
    # The instance lives on after both.
    assert invoke_event(d, "py", {})[0] == 200


def test_a_zip_package_with_a_dependency_and_the_cli(spated, tmp_path):
    d = spated
    pkg = zipped({
        "lambda_function.py": b"import greeter\n\ndef lambda_handler(event, context):\n"
                              b"    return greeter.greet(event['name'])\n",
        "greeter/__init__.py": b"from .core import greet\n",
        "greeter/core.py": b"def greet(name):\n    return 'hello ' + name\n",
    })
    path = tmp_path / "function.zip"
    path.write_bytes(pkg)
    r = d.cli("deploy", "zipped", str(path), "--runtime", "python3",
              "--handler", "lambda_function.lambda_handler")
    assert r.returncode == 0, r.stderr
    r = d.cli("invoke", "zipped", '{"name": "spate"}')
    assert r.returncode == 0 and json.loads(r.stdout) == "hello spate", r
    # A lone file through the CLI keeps its name: main.py, handler main.run.
    src = tmp_path / "main.py"
    src.write_bytes(b"def run(event, context):\n    return {'ok': event}\n")
    r = d.cli("deploy", "single", str(src), "--runtime", "python3", "--handler", "main.run")
    assert r.returncode == 0, r.stderr
    assert json.loads(d.invoke("single", b"[1]")[1]) == {"ok": [1]}
    # Over HTTP a lone file is named after the handler's module, folders included.
    status, doc = deploy_py(d, "nested", b"def run(event, context):\n    return __name__\n",
                            handler="lib/tools.run")
    assert status == 201, doc
    assert d.invoke("nested", b"{}") == (200, b'"lib.tools"')
    # The same source under another name is another artifact.
    status, doc2 = deploy_py(d, "renamed", b"def run(event, context):\n    return __name__\n",
                             handler="main.run")
    assert status == 201 and doc2["sha256"] != doc["sha256"], (doc, doc2)


@pytest.mark.parametrize("artifact,handler,expect", [
    (b"import no_such_dependency\ndef handler(e, c):\n    return 1\n", "app.handler",
     "Unable to import module 'app': No module named 'no_such_dependency'"),
    (b"def handler(e, c):\n    return 1\n", "app.missing", "Handler 'missing' missing on module 'app'"),
    (b"def handler(e, c)\n    return 1\n", "app.handler", "Runtime.UserCodeSyntaxError"),
    (b"raise RuntimeError('no config')\n", "app.handler", "RuntimeError: no config"),
    # sys.exit at import is no Exception: the zygote's answer named nothing ("Error: ").
    (b"import sys\nsys.exit(3)\n", "app.handler", "Unable to import module 'app': SystemExit: 3"),
    (zipped({"other.py": b"x = 1\n"}), "app.handler", "No module named 'app'"),
])
def test_a_handler_that_cannot_load_fails_the_deploy(spated, artifact, handler, expect):
    status, doc = deploy_py(spated, "bad", artifact, handler=handler)
    assert status == 400, doc
    assert expect in doc["error"], doc
    # Nothing was deployed.
    assert spated.json("GET", "/v1/functions/bad")[0] == 404


@pytest.mark.parametrize("artifact,expect", [
    (b"import time\ntime.sleep(100000)\n", "the handler's module did not import within"),
    (b"x = bytearray(400 << 20)\nfor i in range(0, len(x), 4096):\n    x[i] = 1\n",
     "while importing the handler's module (over its --memory of 64 MB?)"),
])
def test_a_zygote_import_that_hangs_or_eats_memory_is_named(spated, artifact, expect):
    # The zygote's refusals spoke of a shared object and spate_preload, which
    # a Python user never wrote.
    status, doc = deploy_py(spated, "bad", artifact, memory=64)
    # Without a memory cgroup RLIMIT_AS holds it: Python's own MemoryError.
    assert status == 400 and (expect in doc["error"] or "MemoryError" in doc["error"]), doc


@pytest.mark.parametrize("params,expect", [
    ({"runtime": "python2", "handler": "app.handler"}, "unknown runtime 'python2'"),
    ({"runtime": "python3"}, "runtime python3 needs a handler"),
    ({"runtime": "python3", "handler": "app"}, "is not MODULE.FUNCTION"),
    ({"runtime": "python3", "handler": "../x.handler"}, "is not MODULE.FUNCTION"),
    ({"runtime": "python3", "handler": "app.handler", "file": "app.txt"}, "ending in .py"),
    ({"runtime": "exec", "handler": "app.handler"}, "a handler is for runtimes python3 and nodejs"),
])
def test_bad_runtime_parameters_are_refused(spated, params, expect):
    status, doc = spated.deploy("bad", APP, **params)
    assert status == 400 and expect in doc["error"], doc


def test_print_lines_reach_the_log_with_the_request_id(spated):
    d = spated
    assert deploy_py(d, "py", APP)[0] == 201
    status, rid, body = invoke_event(d, "py", {"what": "print"})
    assert status == 200, body

    def logged():
        out = d.cli("logs", "py").stdout.decode()
        return out if f"to stderr" in out and "hello from" in out else ""
    out = wait_for(logged, timeout=15)
    assert f"req {rid} stdout: hello from {rid}" in out, out
    assert f"req {rid} stderr: to stderr" in out, out


def test_a_runtime_killed_mid_invocation(spated):
    d = spated
    assert deploy_py(d, "py", APP, timeout=30000)[0] == 201
    assert invoke_event(d, "py", {})[0] == 200
    import threading
    result = {}
    t = threading.Thread(target=lambda: result.update(r=invoke_event(d, "py", {"what": "sleep", "s": 20})))
    t.start()

    def bootstrap_pid():
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            # The bootstrap, or (the zygote's way) spate-runner's fork for py.
            ours = (len(cmd) > 1 and cmd[0] == b"/usr/bin/python3"
                    and cmd[-2].endswith(b"runtimes/python3/bootstrap")) or \
                (b"--function" in cmd and cmd[cmd.index(b"--function") + 1] == b"py")
            if ours:
                try:
                    stack = open(f"/proc/{pid}/wchan").read()
                except OSError:
                    stack = ""
                if "sleep" in stack or "nanosleep" in stack:
                    return int(pid)
        return None
    pid = wait_for(bootstrap_pid, timeout=15)
    assert pid, "the sleeping runtime was not found"
    os.kill(pid, signal.SIGKILL)
    t.join(timeout=30)
    status, _, body = result["r"]
    assert status == 502, body
    assert "killed by signal 9" in json.loads(body)["error"], body
    # The next invocation gets a new instance.
    assert invoke_event(d, "py", {"x": 1})[0] == 200


FORKED = b"""
import os
import threading

IMPORT_PID = os.getpid()
threading.Thread(target=lambda: None).start()


def handler(event, context):
    with open("/proc/self/cgroup") as f:
        cgroup = f.read().strip()
    return {"import_pid": IMPORT_PID, "pid": os.getpid(), "cgroup": cgroup,
            "uid": os.getuid(), "cwd": os.getcwd()}
"""


def test_instances_fork_from_a_zygote_unless_the_function_opts_out(spated):
    d = spated
    assert deploy_py(d, "z", FORKED, handler="app.handler", max=4)[0] == 201
    first = json.loads(d.invoke("z", b"{}")[1])
    # The module was imported in the zygote, before the fork.
    assert first["import_pid"] != first["pid"], first
    assert first["uid"] != 0 and first["cwd"] == "/var/task", first
    # Instances run side by side, each in a cgroup of its own.
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(lambda _: json.loads(invoke_event(d, "z", {})[2]), range(8)))
    assert {o["import_pid"] for o in outs} == {first["import_pid"]}
    cgroups = {o["pid"]: o["cgroup"] for o in outs + [first]}
    assert len(set(cgroups.values())) == len(cgroups), cgroups
    # Opting out: each instance is its own interpreter that imported the module.
    status, doc = deploy_py(d, "z", FORKED, env="SPATE_PYTHON_ZYGOTE%3D0")
    assert status == 200, doc
    out = json.loads(d.invoke("z", b"{}")[1])
    assert out["import_pid"] == out["pid"], out


def test_nodejs_runs_the_shipped_client(spated):
    status, doc = spated.deploy("js", b"exports.handler = async (e, c) => ({got: e, fn: c.functionName});\n",
                                runtime="nodejs", handler="index.handler", file="index.js")
    assert status == 201 and doc["config"]["runtime"] == "nodejs", doc
    status, body = spated.invoke("js", b'{"a": 1}')[:2]
    assert status == 200 and json.loads(body) == {"got": {"a": 1}, "fn": "js"}, body
    status, doc = spated.deploy("js2", b"exports.handler = ;\n", runtime="nodejs",
                                handler="index.handler", file="index.js")
    assert status == 400 and "SyntaxError" in doc["error"], doc


def test_managed_runtimes_get_sqs_events_from_triggers(spated):
    assert deploy_py(spated, "sq", b"def handler(e, c):\n    print('REC', e['Records'][0]['body'])\n",
                     file="app.py")[0] == 201
    status, doc = spated.json("PUT", "/v1/triggers/tq/sq")
    assert status in (200, 201) and doc["event_format"] == "sqs", doc
    assert spated.json("POST", "/v1/topics/tq/messages", b"hello")[0] in (200, 201, 202)
    def logged():
        return "REC hello" in json.dumps(spated.json("GET", "/v1/functions/sq/logs")[1])
    assert wait_for(logged, timeout=30), spated.json("GET", "/v1/functions/sq/logs")[1]
