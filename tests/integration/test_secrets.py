"""Secrets: write-only variables (--secret K=V, --secret-file) and files of
plain variables (--env-file). A secret reaches the instance's environment;
its value is shown to no one — not describe, status, ls, logs or metrics,
not even to an admin — only its name."""

import json
import os
import stat

ADMIN = "admin-token-0123456789abcdef"
INVOKE = "invoke-token-0123456789abcdef"
VALUE = "hunter2-correct-horse-battery"


def node_with_tokens(make_spated, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin {ADMIN}\ninvoke {INVOKE}\n")
    return make_spated("--token-file", str(tokens))


def cli(d, *args, token=ADMIN):
    return d.cli(*args, env={"SPATE_TOKEN": token})


def test_a_secret_reaches_the_function_and_nobody_else(make_spated, functions, tmp_path):
    d = node_with_tokens(make_spated, tmp_path)
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"# the database\nDB_PASSWORD={VALUE}\n\nAPI_KEY=k-{VALUE}\n")
    plain = tmp_path / "plain.env"
    plain.write_text("REGION=eu-west-1\nMODE=fast\n")
    r = cli(d, "deploy", "probe", str(functions["probe"]), "--secret-file", str(secrets),
            "--env-file", str(plain), "--secret", f"TOKEN=t-{VALUE}")
    assert r.returncode == 0, r.stderr
    # The function sees every variable.
    for name, want in (("DB_PASSWORD", VALUE), ("API_KEY", f"k-{VALUE}"), ("TOKEN", f"t-{VALUE}"),
                       ("REGION", "eu-west-1"), ("MODE", "fast")):
        r = cli(d, "invoke", "probe", f"env:{name}")
        assert r.returncode == 0 and r.stdout.decode() == want, (name, r)
    # Nobody sees a secret's value: an admin's describe, status, ls, logs, metrics.
    for args in (("status", "probe"), ("status", "probe", "--json"), ("ls", "--json"),
                 ("logs", "probe")):
        r = cli(d, *args)
        assert r.returncode == 0, (args, r.stderr)
        assert VALUE.encode() not in r.stdout + r.stderr, args
    r = cli(d, "status", "probe")
    assert b"secret DB_PASSWORD (value never shown)" in r.stdout
    assert b"env REGION=eu-west-1" in r.stdout  # plain values: an admin sees them
    status, _, body = d.request("GET", "/v1/functions/probe",
                                headers={"Authorization": f"Bearer {ADMIN}"})
    assert status == 200 and VALUE.encode() not in body
    assert b'"secrets":["DB_PASSWORD","API_KEY","TOKEN"]' in body, body
    status, _, body = d.request("GET", "/metrics", headers={"Authorization": f"Bearer {INVOKE}"})
    assert status == 200 and VALUE.encode() not in body
    assert VALUE not in d.log()
    # Stored where only root reads it.
    db = d.data / "spate.db"
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    # A redeploy keeps the secrets; --unset-env removes one; --env of a
    # secret's name makes it plain again (a name is one or the other).
    assert cli(d, "deploy", "probe", str(functions["probe"]), "--max", "3").returncode == 0
    assert cli(d, "invoke", "probe", "env:DB_PASSWORD").stdout.decode() == VALUE
    assert cli(d, "config", "probe", "--unset-env", "API_KEY", "--env", "TOKEN=open").returncode == 0
    assert cli(d, "invoke", "probe", "env:API_KEY").stdout == b"(unset)"
    status, _, body = d.request("GET", "/v1/functions/probe",
                                headers={"Authorization": f"Bearer {ADMIN}"})
    assert b'"secrets":["DB_PASSWORD"]' in body and b'"TOKEN":"open"' in body, body
    # After a restart they are still there, still hidden.
    d.stop()
    d.start()
    assert cli(d, "invoke", "probe", "env:DB_PASSWORD").stdout.decode() == VALUE
    assert VALUE.encode() not in cli(d, "status", "probe", "--json").stdout


def test_variable_files_and_entries_are_checked(spated, functions, tmp_path):
    bad = tmp_path / "bad.env"
    bad.write_text("GOOD=1\nno equals sign here\n")
    r = spated.cli("deploy", "probe", str(functions["probe"]), "--env-file", str(bad))
    assert r.returncode == 2 and f"--env-file: {bad}:2: 'no equals sign here' is not KEY=VALUE" \
        in r.stderr.decode(), r.stderr
    # A file that cannot be read is exit 1 and io_error, as an artifact or an
    # @FILE payload that cannot be (spate(1)), not a usage error.
    r = spated.cli("deploy", "probe", str(functions["probe"]), "--secret-file", "/nonexistent")
    assert r.returncode == 1 and b"--secret-file: cannot open '/nonexistent'" in r.stderr
    r = spated.cli("--json", "deploy", "probe", str(functions["probe"]), "--env-file", "/nonexistent")
    assert r.returncode == 1 and json.loads(r.stderr)["code"] == "io_error", r.stderr
    # A line spated would refuse is named by file and line, not only by key.
    for text, line, why in (("A=1\nB = 2\n", 2, "environment key 'B ' must match"),
                            ("# shell habit\nexport E=y\n", 2, "environment key 'export E'"),
                            ("LD_PRELOAD=/x.so\n", 1, "'LD_PRELOAD' is refused")):
        bad.write_text(text)
        for opt in ("--env-file", "--secret-file"):
            r = spated.cli("deploy", "probe", str(functions["probe"]), opt, str(bad))
            assert r.returncode == 2 and f"{opt}: {bad}:{line}: " in r.stderr.decode() \
                and why in r.stderr.decode(), r.stderr
    assert spated.cli("status", "probe").returncode == 3  # nothing was deployed
    r = spated.cli("deploy", "probe", str(functions["probe"]), "--env", "JUSTANAME")
    assert r.returncode == 2 and b"--env 'JUSTANAME': not KEY=VALUE" in r.stderr, r.stderr
    r = spated.cli("deploy", "probe", str(functions["probe"]), "--secret", "LD_PRELOAD=/x.so")
    assert r.returncode != 0 and b"refused" in r.stderr, r.stderr
