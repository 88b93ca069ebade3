"""Operating spated as a daemon: the configuration file and its errors,
--check-config, SIGHUP reloads, sd_notify readiness, make install into a
DESTDIR (and uninstall), the man pages and bash completion."""

import http.client
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import BUILD, ROOT, SPATE, SPATED, Spated, wait_for



def check_config(*args):
    return subprocess.run([str(SPATED), "--check-config", *args], capture_output=True, text=True,
                          timeout=10)


def effective(out):
    return dict(line.split(" = ", 1) for line in out.splitlines()
                if line and not line.startswith("#"))


def test_versions():
    for prog, name in ((SPATED, "spated"), (SPATE, "spate")):
        r = subprocess.run([str(prog), "--version"], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0
        assert re.match(rf"{name} \d+\.\d+\.\d+ \(commit [0-9a-f]{{12}}\)$", r.stdout.strip()), r.stdout


def test_file_and_command_line_precedence(tmp_path):
    conf = tmp_path / "spated.conf"
    conf.write_text("# a comment\n[spated]\nmax-instances = 7\nlog_level = warn\n"
                    "payload-max = 1000  ; inline comment\n")
    r = check_config("--config", str(conf), "--max-instances", "9")
    assert r.returncode == 0, r.stderr
    cfg = effective(r.stdout)
    assert cfg["max-instances"] == "9"       # the command line wins
    assert cfg["log-level"] == "warn"        # from the file ('_' for '-')
    assert cfg["payload-max"] == "1000"
    assert cfg["listen"] == "127.0.0.1:7728"  # a default
    # Without the file, the defaults.
    assert effective(check_config().stdout)["log-level"] == "info"


def test_spated_runs_from_a_config_file(tmp_path):
    conf = tmp_path / "spated.conf"
    conf.write_text(f"data = {tmp_path / 'data'}\nlog-format = json\n")
    d = Spated(tmp_path, data=tmp_path / "data", args=["--config", str(conf)])
    d.start()
    try:
        assert d.request("GET", "/v1/health")[0] == 200
        assert '"config":"' + str(conf) in d.log()
    finally:
        assert d.stop() == 0


BAD = [
    ("bogus = 1\n", 1, "unknown key 'bogus'"),
    ("\n\nmax-instances = many\n", 3, "key 'max-instances': 'many' is not an integer from 1 to 10000"),
    ("max-connections = 0\n", 1, "key 'max-connections': '0' is not an integer from 1 to 1000000"),
    ("header-max = 99999999\n", 1, "key 'header-max': '99999999' is not an integer from 1024"),
    ("log-format = xml\n", 1, "key 'log-format': 'xml' is not one of text, json"),
    ("listen = nowhere\n", 1, "key 'listen': 'nowhere' is not HOST:PORT"),
    ("insecure = maybe\n", 1, "key 'insecure': 'maybe' is not true or false"),
    ("[other]\nlisten = 127.0.0.1:1\n", 2, "unknown section [other]"),
    ("# fine\njust some words\n", 2, "not 'key = value', a [section] or a comment"),
    ("config = /etc/x\n", 1, "key 'config' belongs on the command line only"),
    ("run-as = " + "x" * 100 + "\n", 1, "key 'run-as': is longer than 63 bytes"),
]


@pytest.mark.parametrize("text,line,message", BAD, ids=[b[2][:30] for b in BAD])
def test_bad_config_names_file_line_and_key(tmp_path, text, line, message):
    conf = tmp_path / "bad.conf"
    conf.write_text(text)
    r = check_config("--config", str(conf))
    assert r.returncode == 2
    assert f"spated: {conf}:{line}: {message}" in r.stderr, r.stderr
    # And spated refuses to start with it.
    r = subprocess.run([str(SPATED), "--config", str(conf), "--data", str(tmp_path / "d")],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and message in r.stderr


def test_config_file_problems(tmp_path):
    r = check_config("--config", str(tmp_path / "missing.conf"))
    assert r.returncode == 2 and "cannot read config file" in r.stderr
    long = tmp_path / "long.conf"
    long.write_text("data = /" + "d" * 5000 + "\n")
    r = check_config("--config", str(long))
    assert r.returncode == 2 and f"{long}:1: line longer than" in r.stderr, r.stderr
    big = tmp_path / "big.conf"
    big.write_text("# padding\n" * 200000)
    r = check_config("--config", str(big))
    assert r.returncode == 2 and "is larger than 1048576 bytes" in r.stderr
    r = check_config("--max-instances", "0")
    assert r.returncode == 2 and "option '--max-instances': '0' is not an integer" in r.stderr


def test_writable_is_a_list_of_resolved_paths(tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    for p in (a, b, c):
        p.mkdir()
    (tmp_path / "link").symlink_to(b)
    conf = tmp_path / "w.conf"
    # Repeated keys add, and so does a comma-separated value.
    conf.write_text(f"writable = {a}, {tmp_path}/link\nwritable = {c}\n")
    r = check_config("--config", str(conf))
    assert r.returncode == 0, r.stderr
    assert effective(r.stdout)["writable"] == f"{a},{b},{c}"  # the link resolved
    # The command line's replace the file's; repeated, they add.
    r = check_config("--config", str(conf), "--writable", str(c), "--writable", str(a))
    assert r.returncode == 0, r.stderr
    assert effective(r.stdout)["writable"] == f"{c},{a}"
    assert effective(check_config().stdout)["writable"] == ""
    for bad, message in ((tmp_path / "missing", "No such file or directory"),
                         ("/", "name the directories to leave writable"),
                         ("/tmp", "each instance has a /tmp of its own"),
                         ("/dev/shm", "each instance has a /dev/shm of its own")):
        r = check_config("--writable", str(bad))
        assert r.returncode == 2 and f"cannot use --writable '{bad}': {message}" in r.stderr, r.stderr
    r = check_config(*[x for _ in range(17) for x in ("--writable", str(a))])
    assert r.returncode == 2 and "--writable: more than 16 paths" in r.stderr, r.stderr


def test_check_config_reports_every_error_of_a_file(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("max-instances = many\nlog-level = loud\nmax-instance = 4\nthis is not a key\n")
    r = check_config("--config", str(conf))
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert lines == [
        f"spated: {conf}:1: key 'max-instances': 'many' is not an integer from 1 to 10000",
        f"spated: {conf}:2: key 'log-level': 'loud' is not one of debug, info, warn, error",
        f"spated: {conf}:3: unknown key 'max-instance' (spated --help lists the options)",
        f"spated: {conf}:4: not 'key = value', a [section] or a comment",
    ], r.stderr


def test_sample_config_has_every_option(tmp_path):
    sample = (ROOT / "etc/spated.conf").read_text()
    help_text = subprocess.run([str(SPATED), "--help"], capture_output=True, text=True).stdout
    options = re.findall(r"^  --([a-z-]+) ", help_text, re.M)
    keys = [o for o in options if o not in ("config", "check-config", "version", "help")]
    assert len(keys) > 15
    for key in keys:
        assert re.search(rf"^#{key} = ", sample, re.M), f"{key} missing from etc/spated.conf"
    # As shipped it is valid, and so it is with every value uncommented (the
    # defaults it states), but for the files that need to exist.
    assert check_config("--config", str(ROOT / "etc/spated.conf")).returncode == 0
    on = tmp_path / "on.conf"
    on.write_text(re.sub(r"^#((?!token-file|runner|tls-|cluster-creds|cluster-tls|cluster-key)[a-z-]+ = )", r"\1",
                         sample, flags=re.M))
    r = check_config("--config", str(on))
    assert r.returncode == 0, r.stderr
    cfg = effective(r.stdout)
    # A relative data directory is made absolute against the working directory.
    assert cfg["max-instances"] == "1024" and cfg["data"] == f"{os.getcwd()}/spate-data"


def test_help_states_the_defaults_spated_uses():
    # The help's "[default]" of each option is what --check-config says
    # spated runs with when nothing is set (issue 15: no default typed twice).
    help_text = subprocess.run([str(SPATED), "--help"], capture_output=True, text=True).stdout
    stated = dict(re.findall(r"^  --([a-z-]+) .*\[([^\]]*)\]$", help_text, re.M))
    r = check_config()
    assert r.returncode == 0, r.stderr
    cfg = effective(r.stdout)
    words = {"none": "", "beside spated": None, "one per 16 MiB of memory": None,
             "8 per CPU, at least 16": None}
    assert len(stated) > 20 and "max-connections" in stated
    for key, default in stated.items():
        want = words.get(default, default)
        if want is None:
            continue
        if key == "data":
            want = os.path.abspath(want)
        assert cfg[key] == want, (key, default, cfg[key])


def test_sighup_reloads_tokens_without_dropping_work(tmp_path, functions):
    tokens = tmp_path / "tokens"
    tokens.write_text("admin old-admin-token-0123456789\n")
    d = Spated(tmp_path, args=["--token-file", str(tokens)])
    d.start()
    try:
        old = {"Authorization": "Bearer old-admin-token-0123456789"}
        new = {"Authorization": "Bearer new-admin-token-0123456789"}
        body = functions["probe"].read_bytes()
        assert d.request("PUT", "/v1/functions/probe", body, old)[0] == 201
        # One invocation in flight across the reload, on its own connection.
        result = {}

        def slow():
            result["r"] = d.request("POST", "/v1/functions/probe/invoke", b"sleep:1500", old)

        t = threading.Thread(target=slow)
        t.start()
        # And a keep-alive connection open across it.
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        conn.request("GET", "/v1/functions", headers=old)
        assert conn.getresponse().read() and True
        time.sleep(0.3)
        tokens.write_text("admin new-admin-token-0123456789\n")
        d.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "configuration reloaded" in d.log())
        t.join(10)
        assert result["r"][0] == 200 and result["r"][2] == b"slept"
        assert "reload: tokens loaded from" in d.log()
        assert d.request("GET", "/v1/functions", headers=old)[0] == 401
        assert d.request("GET", "/v1/functions", headers=new)[0] == 200
        conn.request("GET", "/v1/functions", headers=new)
        r = conn.getresponse()
        assert r.status == 200 and r.read()
        conn.close()
        assert d.proc.poll() is None
    finally:
        assert d.stop() == 0


def test_sighup_applies_what_it_can_and_says_what_it_cannot(tmp_path, functions):
    conf = tmp_path / "spated.conf"
    conf.write_text("log-level = info\npayload-max = 6291456\n")
    d = Spated(tmp_path, args=["--config", str(conf)])
    d.start()
    try:
        assert d.deploy("probe", functions["probe"])[0] == 201
        assert d.invoke("probe", b"x" * 2000)[0] == 200
        conf.write_text("log-level = debug\npayload-max = 1000\npids-max = 5\n")
        d.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "configuration reloaded" in d.log())
        log = d.log()
        assert "reload: log-level info -> debug" in log
        assert "reload: payload-max 6291456 -> 1000" in log
        assert "reload: pids-max changed (128 -> 5) but takes a restart; still 128" in log
        # The new limit is in force.
        assert d.invoke("probe", b"x" * 2000)[0] == 413
        # A broken file changes nothing and spated carries on.
        conf.write_text("payload-max = lots\n")
        d.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload failed" in d.log())
        assert f"reload failed: {conf}:1: key 'payload-max'" in d.log()
        assert d.invoke("probe", b"x" * 500)[0] == 200
    finally:
        assert d.stop() == 0


def test_readiness_reaches_notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(15)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    proc = subprocess.Popen([str(SPATED), "--data", str(tmp_path / "d"), "--listen",
                             "127.0.0.1:0"], env=env, stderr=subprocess.PIPE)
    try:
        msg = sock.recv(4096).decode()
        assert "READY=1" in msg and f"MAINPID={proc.pid}" in msg, msg
        assert "STATUS=listening on 127.0.0.1:" in msg
        proc.send_signal(signal.SIGHUP)
        assert "RELOADING=1" in sock.recv(4096).decode()
        assert "READY=1" in sock.recv(4096).decode()
        proc.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in sock.recv(4096).decode()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()


def test_make_install_and_uninstall(tmp_path):
    dest = tmp_path / "root"
    make = ["make", "--no-print-directory", "-C", str(ROOT), f"BUILD={BUILD}", "PREFIX=/usr",
            f"DESTDIR={dest}"]
    r = subprocess.run([*make, "install"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    usr = dest / "usr"
    for f in ("bin/spate", "sbin/spated", "libexec/spate/spate-runner", "include/spate.h",
              "libexec/spate/runtimes/python3/bootstrap", "libexec/spate/runtimes/nodejs/bootstrap",
              "share/man/man1/spate.1", "share/man/man8/spated.8",
              "share/man/man7/spate-functions.7", "lib/systemd/system/spated.service",
              "share/bash-completion/completions/spate", "share/doc/spate/spated.conf.example"):
        assert (usr / f).exists(), f
    # The installed configuration decides the data directory; the unit
    # passes nothing that would silently override the file.
    conf = dest / "etc/spate/spated.conf"
    sample = (ROOT / "etc/spated.conf").read_text()
    assert conf.read_text() == sample.replace("\n#data = ./spate-data\n", "\ndata = /var/lib/spate\n")
    assert "\ndata = /var/lib/spate\n" in conf.read_text()
    unit = (usr / "lib/systemd/system/spated.service").read_text()
    assert "ExecStart=/usr/sbin/spated --config /etc/spate/spated.conf\n" in unit
    assert "Type=notify" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit

    # The installed programs work from there: spated finds its runner in
    # libexec, a function built against the installed header runs.
    fn = tmp_path / "hello.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-I", str(usr / "include"), "-o", str(fn),
                    str(ROOT / "examples/hello/hello.c")], check=True)
    data = tmp_path / "data"
    proc = subprocess.Popen([str(usr / "sbin/spated"), "--config", str(conf), "--data", str(data),
                             "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in proc.stderr:
            m = re.search(r"listening on [^ ]+:(\d+) ", line)
            if m:
                port = m.group(1)
                break
        assert port
        env = dict(os.environ, SPATE_URL=f"http://127.0.0.1:{port}")
        spate = str(usr / "bin/spate")
        assert subprocess.run([spate, "deploy", "hello", str(fn)], env=env,
                              capture_output=True).returncode == 0
        r = subprocess.run([spate, "invoke", "hello", "installed"], env=env, capture_output=True)
        assert r.returncode == 0 and b"installed" in r.stdout
        # spated takes the Python runtime client from libexec too.
        app = tmp_path / "app.py"
        app.write_text("def handler(event, context):\n    return {'installed': event}\n")
        r = subprocess.run([spate, "deploy", "py", str(app), "--runtime", "python3", "--handler",
                            "app.handler"], env=env, capture_output=True)
        assert r.returncode == 0, r.stderr
        r = subprocess.run([spate, "invoke", "py", "1"], env=env, capture_output=True)
        assert r.returncode == 0 and r.stdout == b'{"installed": 1}', r
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0

    # The man pages render.
    for page in ("man1/spate.1", "man8/spated.8", "man7/spate-functions.7"):
        r = subprocess.run(["man", "-l", str(usr / "share/man" / page)], capture_output=True,
                           text=True, env=dict(os.environ, MANPAGER="cat", MANWIDTH="80"))
        assert r.returncode == 0 and "NAME" in r.stdout and "SEE ALSO" in r.stdout, r.stderr
    # The completion loads in bash and completes.
    script = usr / "share/bash-completion/completions/spate"
    r = subprocess.run(["bash", "-c", f"source {script}; COMP_WORDS=(spate dep); COMP_CWORD=1; "
                        "_spate; echo ${COMPREPLY[@]}; COMP_WORDS=(spate trigger add t f --dea); "
                        "COMP_CWORD=5; _spate; echo ${COMPREPLY[@]}"],
                       capture_output=True, text=True)
    assert r.stdout.split("\n")[:2] == ["deploy", "--deadline"], r.stdout + r.stderr

    r = subprocess.run([*make, "uninstall"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    left = [p for p in dest.rglob("*") if p.is_file()]
    assert left == [], left
