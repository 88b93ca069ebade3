"""The spate command-line client, as a user runs it."""

import json


def test_deploy_invoke_ls_status_rm(spated, functions):
    r = spated.cli("deploy", "hello", str(functions["hello"]), "--max", "5", "--env", "A=b c")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().startswith("deployed hello version 1 ")
    r = spated.cli("invoke", "hello", "cli")
    assert (r.returncode, r.stdout) == (0, b"hello, cli\n")
    r = spated.cli("invoke", "hello", "-", input=b"stdin")
    assert (r.returncode, r.stdout) == (0, b"hello, stdin\n")
    r = spated.cli("ls")
    assert r.returncode == 0
    lines = r.stdout.decode().splitlines()
    assert lines[0].split()[:3] == ["NAME", "VERSION", "RUNTIME"]
    assert lines[1].split()[:3] == ["hello", "1", "native"]
    r = spated.cli("status", "hello")
    assert r.returncode == 0
    out = r.stdout.decode()
    assert "max 5" in out and "env A=b c" in out and "versions" in out
    r = spated.cli("rm", "hello")
    assert (r.returncode, r.stdout) == (0, b"removed hello\n")
    assert spated.cli("ls").stdout.decode().count("\n") == 1


def test_json_output(spated, functions):
    r = spated.cli("--json", "deploy", "hello", str(functions["hello"]))
    assert json.loads(r.stdout)["version"] == 1
    assert json.loads(spated.cli("ls", "--json").stdout)["functions"][0]["name"] == "hello"
    doc = json.loads(spated.cli("status", "hello", "--json").stdout)
    assert doc["versions"][0]["version"] == 1


def test_invoke_passes_binary_payloads(spated, functions):
    spated.deploy("probe", functions["probe"])
    blob = bytes(range(256)) * 1000
    r = spated.cli("invoke", "probe", "-", input=blob)
    assert (r.returncode, r.stdout) == (0, blob)


def test_errors_go_to_stderr_with_a_non_zero_status(spated, functions, tmp_path):
    spated.deploy("probe", functions["probe"], timeout=300)
    r = spated.cli("invoke", "probe", "fail")
    assert r.returncode == 5 and r.stdout == b""
    assert b"probe was asked to fail" in r.stderr and b"HTTP 502" in r.stderr
    r = spated.cli("invoke", "probe", "hang")
    assert r.returncode == 5 and b"504" in r.stderr
    r = spated.cli("invoke", "nosuch")
    assert r.returncode == 3 and b"function 'nosuch' does not exist" in r.stderr
    r = spated.cli("status", "nosuch")
    assert r.returncode == 3
    r = spated.cli("rm", "nosuch")
    assert r.returncode == 3
    r = spated.cli("deploy", "x", str(tmp_path / "missing.so"))
    assert r.returncode == 1 and b"cannot open" in r.stderr
    bad = tmp_path / "bad.so"
    bad.write_bytes(b"not an elf file at all, just some text that is long enough" * 3)
    r = spated.cli("deploy", "x", str(bad))
    assert r.returncode == 2 and b"invalid ELF header" in r.stderr
    r = spated.cli("deploy", "x", str(functions["hello"]), "--min", "many")
    assert r.returncode == 2 and b"--min takes a number, not 'many'" in r.stderr
    r = spated.cli("deploy", "bad/name", str(functions["hello"]))
    assert r.returncode == 2 and b"invalid function name 'bad/name'" in r.stderr


def test_usage_errors(spated):
    assert spated.cli("frobnicate").returncode == 2
    assert spated.cli("invoke").returncode == 2
    assert spated.cli("deploy", "x", "y", "--wat", "1").returncode == 2
    assert spated.cli().returncode == 2
    r = spated.cli("--help")
    assert r.returncode == 0 and b"deploy NAME FILE" in r.stdout
    r = spated.cli("--version")
    assert r.returncode == 0 and r.stdout.startswith(b"spate ")


def test_unreachable_server(spated):
    r = spated.cli("ls", env={"SPATE_URL": "http://127.0.0.1:1"})
    assert r.returncode == 6 and b"cannot reach spated" in r.stderr
    r = spated.cli("--url", spated.url, "ls", env={"SPATE_URL": "http://127.0.0.1:1"})
    assert r.returncode == 0
