"""A new user's first week, once more, after issue 14: what a fresh eye
still found, each through the CLI where the user meets it."""

import json


def cli_ok(d, *args, **kw):
    r = d.cli(*args, **kw)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout.decode()


def test_a_single_node_counts_its_functions(spated, functions):
    """`spate nodes` on one node said FUNCTIONS 0 beside two functions."""
    for name in ("a", "b"):
        cli_ok(spated, "deploy", name, str(functions["hello"]))
    rows = cli_ok(spated, "nodes").splitlines()
    assert rows[1].split()[:4] == ["local*", "up", "0", "2"], rows
    doc = json.loads(cli_ok(spated, "nodes", "--json"))
    assert doc["nodes"][0]["functions"] == 2, doc
    cli_ok(spated, "rm", "b")
    assert json.loads(cli_ok(spated, "nodes", "--json"))["nodes"][0]["functions"] == 1
