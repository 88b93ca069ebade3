"""Integration tests drive real spated processes, as a user would.

Each test gets its own spated on a free loopback port (``--listen 127.0.0.1:0``;
the port is read from the log) with a fresh data directory. Test functions
are compiled from tests/integration/functions/ with nothing but
``cc -shared -fPIC -I include``, exactly as the README tells users.
"""

import contextlib
import http.client
import io
import json
import os
import pathlib
import re
import signal
import subprocess
import time
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("SPATE_BUILD", ROOT / "build"))
SPATED = BUILD / "spated"
SPATE = BUILD / "spate"

# Each instance has a private /tmp (its own mount namespace): files tests
# hand to functions, or read back from them, live under /var/tmp instead.
# The rest of the host is read-only to functions: every spated started here
# leaves pytest's base temporary directory writable to them (--writable).
os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", "/var/tmp")

# pytest's base temporary directory, once the session has made it.
BASETEMP = None

# Built with AddressSanitizer (make sanitize's build).
ASAN_BUILD = "SPATE_ASAN:BOOL=ON" in ((BUILD / "CMakeCache.txt").read_text()
                                     if (BUILD / "CMakeCache.txt").exists() else "")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "normal_build: runs on the normal build only (it compares timings with a "
        "peer, or sizes what the normal build costs): skipped on the ASan build, and the "
        "one integration run of make test on the -Werror build")
    config.addinivalue_line(
        "markers", "cluster_timing: a JetStream cluster's tests whose requests timed out "
        "under ASan beside make test's other tests: make test runs them on the -Werror "
        "build; make sanitize and make check still run them")


def pytest_collection_modifyitems(config, items):
    if not ASAN_BUILD:
        return
    skip = pytest.mark.skip(reason="normal_build: not on the ASan build")
    for item in items:
        if item.get_closest_marker("normal_build"):
            item.add_marker(skip)


def wait_for(predicate, timeout=10.0, step=0.05):
    """Polls predicate until it returns something true (returned) or the
    timeout passes (then its last value)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def deploy_recorder(d, functions, tmp_path, name="rec", sleep_us=0, **params):
    """Deploys tests/integration/functions/recorder.c as NAME, recording into
    tmp_path/NAME.log (returned); params are more deploy parameters."""
    path = tmp_path / f"{name}.log"
    query = f"env=RECORD%3D{path}&env=SLEEP_US%3D{sleep_us}"
    query += "".join(f"&{k}={v}" for k, v in params.items())
    status, doc = d.json("PUT", f"/v1/functions/{name}?{query}", functions["recorder"].read_bytes())
    assert status in (200, 201), doc
    return path


def topic_stats(d, name):
    """GET /v1/topics/NAME, which must answer 200."""
    status, doc = d.json("GET", f"/v1/topics/{name}")
    assert status == 200, doc
    return doc


# --- Event sources (test_sources_*.py) ----------------------------------------------------


def seen(path):
    """The payloads the recorder (deploy_recorder) started with."""
    if not os.path.exists(path):
        return []
    return [line.split()[1] for line in open(path) if line.startswith("S ")]


@contextlib.contextmanager
def spated_on_small_disk(tmp_path, size="16m"):
    """A started spated whose data is on a tmpfs of size (16 MiB), for a
    store that runs out of room (fill_disk on the yielded file fills it, and
    the tmpfs is the file's folder); stopped and unmounted at the end. Skips
    the test without root."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                            str(mnt)]).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    d = Spated(tmp_path, data=mnt / "data")
    try:
        d.start()
        yield d, mnt / "filler"
    finally:
        d.stop()
        subprocess.run(["umount", "-l", str(mnt)])


def fill_disk(path):
    """Writes the file path until its file system has no block left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    for size in (65536, 512):
        try:
            while os.write(fd, b"\0" * size) > 0:
                pass
        except OSError:
            pass
    os.close(fd)


def add_source(d, name, url, topic, key_field=None):
    """PUT /v1/sources/NAME; (status, document)."""
    body = {"url": url, "topic": topic}
    if key_field:
        body["key_field"] = key_field
    return d.json("PUT", f"/v1/sources/{name}", json.dumps(body).encode())


def add_trigger(d, topic, function):
    status, doc = d.json("PUT", f"/v1/triggers/{topic}/{function}")
    assert status == 201, doc


# The AWS Lambda Runtime API loop of a Python bootstrap (runtime=exec): asks
# for work, answers "ok", and appends each body to $RECORD when it is set.
RUNTIME_LOOP = b"""
import os, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        body = r.read()
    if os.environ.get("RECORD"):
        with open(os.environ["RECORD"], "ab") as f:
            f.write(body + b"\\n")
    urllib.request.urlopen(urllib.request.Request(api + rid + "/response", data=b"ok",
                                                  method="POST")).read()
"""


def zipped(files, mode=0o644):
    """A zip of files (name -> text or bytes) with Unix mode bits: bootstrap
    executable (what Lambda's custom runtimes run), the rest mode."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | (0o755 if name == "bootstrap" else mode)) << 16
            z.writestr(info, data.encode() if isinstance(data, str) else data)
    return buf.getvalue()


def invoke_event(d, name, event, timeout=30):
    """POST /v1/functions/NAME/invoke with event (JSON-encoded unless bytes);
    (status, request id, body)."""
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    status, headers, data = d.request("POST", f"/v1/functions/{name}/invoke", body, timeout=timeout)
    return status, headers.get("Spate-Request-Id"), data


def source(d, name):
    """GET /v1/sources/NAME's document."""
    return d.json("GET", f"/v1/sources/{name}")[1]


# With pytest-xdist (make integration runs files in parallel) each worker's
# spated processes take their functions' uids from a range of their own: a
# uid comes from the function's name (the same on every node, by design), so
# two workers' functions of one name would otherwise share it and see each
# other's processes.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
UID_ARGS = (["--uid-base", str(2000000000 - 100000000 * (int(WORKER[2:]) + 1))]
            if WORKER.startswith("gw") else [])


class Spated:
    """One spated process and helpers to talk to it."""

    def __init__(self, workdir, data=None, args=(), host="127.0.0.1", prefix=(), cwd=None,
                 writable=None):
        self.workdir = pathlib.Path(workdir)
        # Host paths its functions may write (--writable): by default the
        # tests' base temporary directory, where they record what they saw.
        self.writable = [BASETEMP] if writable is None and BASETEMP else list(writable or ())
        self.cwd = cwd  # spated's working directory (a relative --data is taken from it)
        self.data_arg = str(data) if data else str(self.workdir / "data")  # as typed
        self.data = pathlib.Path(cwd or ".", data) if data else self.workdir / "data"
        self.args = list(args)
        self.host = host  # the loopback address it listens on
        self.prefix = list(prefix)  # run through it, e.g. ip netns exec NAME
        self.proc = None
        self.port = None
        self.log_path = None
        self.starts = 0

    # --- process ---------------------------------------------------------------------

    def start(self, listen=None):
        self.starts += 1
        self.log_path = self.workdir / f"spated-{self.starts}.log"
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [*self.prefix, str(SPATED), "--data", self.data_arg,
             "--listen", listen or f"{self.host}:0",
             *(a for p in self.writable for a in ("--writable", str(p))),
             *(UID_ARGS if "--uid-base" not in self.args else ()), *self.args],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd)
        log.close()
        deadline = time.time() + 30  # an ASan build restoring many functions, on a busy machine
        while time.time() < deadline:
            # Text or JSON (--log-format json).
            m = re.search(r"listening on [^ ]+:(\d+)[ \"]", self.log())
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"spated exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.02)
        self.proc.kill()  # not left running after the test
        self.proc.wait()
        raise RuntimeError("spated did not start:\n" + self.log())

    def stop(self, sig=signal.SIGTERM, timeout=45):
        """Stops spated and returns its exit status. A stop may drain for
        10 s, and an ASan build's then runs LeakSanitizer: 15 s fell short
        under make sanitize's load, and the node a module's cluster shares
        was killed for it, failing every test after (session 49)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    # --- HTTP ------------------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, timeout=30):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def json(self, method, path, body=None):
        status, _, data = self.request(method, path, body)
        return status, (json.loads(data) if data else None)

    def deploy(self, name, artifact, **params):
        query = "&".join(f"{k}={v}" for k, v in params.items())
        body = pathlib.Path(artifact).read_bytes() if isinstance(artifact, (str, pathlib.Path)) else artifact
        return self.json("PUT", f"/v1/functions/{name}" + (f"?{query}" if query else ""), body)

    def invoke(self, name, payload=b"", timeout=30):
        status, _, data = self.request("POST", f"/v1/functions/{name}/invoke", payload, timeout=timeout)
        return status, data

    def describe(self, name):
        status, doc = self.json("GET", f"/v1/functions/{name}")
        assert status == 200, doc
        return doc

    def cli(self, *args, input=None, env=None):
        e = dict(os.environ, SPATE_URL=self.url)
        e.update(env or {})
        return subprocess.run([str(SPATE), *args], input=input, capture_output=True, env=e, timeout=60)


@pytest.fixture(scope="session", autouse=True)
def reachable_basetemp(tmp_path_factory):
    """spated runs as root and its functions as nobody: the data directories
    and the files tests hand to functions live under pytest's temporary
    directory, which nobody must be able to pass through."""
    global BASETEMP
    base = tmp_path_factory.getbasetemp()
    # Up to pytest-of-USER: with pytest-xdist each worker's base is one
    # level deeper (pytest-N/popen-gwK).
    for p in (base, *base.parents):
        p.chmod(p.stat().st_mode | 0o011)
        if p.name.startswith("pytest-of-"):
            break
    BASETEMP = base


@pytest.fixture(autouse=True)
def shared_tmp_path(request, reachable_basetemp):
    """Each test's directory is writable by the functions' user too (as /tmp
    is): functions in tests record what they saw into files there."""
    if "tmp_path" in request.fixturenames:
        request.getfixturevalue("tmp_path").chmod(0o1777)


@pytest.fixture(scope="session")
def functions(tmp_path_factory):
    """Every test function, built as a user builds one: name -> path of the .so."""
    out = tmp_path_factory.mktemp("functions")
    programs = {"bootstrap.c", "atk_m_runtime.c"}  # exec bootstraps, built where used
    sources = [p for p in (ROOT / "tests/integration/functions").glob("*.c")
               if p.name not in programs]
    sources.append(ROOT / "examples/hello/hello.c")
    built = {}
    for src in sources:
        so = out / (src.stem + ".so")
        subprocess.run(["cc", "-shared", "-fPIC", "-I", str(ROOT / "include"), "-o", str(so), str(src)],
                       check=True)
        built[src.stem] = so
    return built


@pytest.fixture
def no_spated_left(monkeypatch):
    """Every spated a test starts is killed at its end, even when an
    assertion stopped it half-way (tests that start Spated themselves,
    without make_spated)."""
    started = []
    start = Spated.start

    def tracked(self, *args, **kwargs):
        started.append(self)
        return start(self, *args, **kwargs)

    monkeypatch.setattr(Spated, "start", tracked)
    yield
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


@pytest.fixture
def spated(tmp_path):
    """A running spated with a fresh data directory; it must stop cleanly."""
    d = Spated(tmp_path).start()
    yield d
    rc = d.stop()
    assert rc == 0, f"spated exited with {rc}:\n{d.log()}"


@pytest.fixture
def make_spated(tmp_path):
    """Starts spated processes with extra options; stops them all at the end."""
    started = []

    def make(*args, data=None, start=True, cwd=None, writable=None):
        d = Spated(tmp_path / f"node{len(started)}", data=data, args=args, cwd=cwd,
                   writable=writable)
        d.workdir.mkdir(parents=True, exist_ok=True)
        started.append(d)
        return d.start() if start else d

    yield make
    for d in started:
        d.stop()
