"""A first week with spate, as a new user meets it: the README's walk-through
and the examples work as written."""

import re

from conftest import ROOT


def test_the_readme_shows_hello_c_as_it_is():
    readme = (ROOT / "README.md").read_text()
    shown = re.search(r"this is `examples/hello/hello.c`\):\n\n```c\n(.*?)```", readme, re.S)
    assert shown, "the README's hello snippet is gone"
    source = (ROOT / "examples/hello/hello.c").read_text()
    # Everything the README shows is in the file, from the first include on.
    assert source[source.index("#include <stdio.h>"):] == shown.group(1)


def test_the_hello_walk_through_greets_with_its_env(spated, functions):
    """examples/hello/README.md step 6: a redeploy with --env GREETING=hi."""
    assert spated.cli("deploy", "hello", str(functions["hello"])).returncode == 0
    assert spated.cli("invoke", "hello", "world").stdout == b"hello, world\n"
    r = spated.cli("deploy", "hello", str(functions["hello"]), "--env", "GREETING=hi", "--max",
                   "10", "--keep-alive", "5000")
    assert r.returncode == 0 and b"version 2" in r.stdout, r
    assert spated.cli("invoke", "hello", "world").stdout == b"hi, world\n"
