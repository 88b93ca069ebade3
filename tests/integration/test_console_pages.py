"""The console's pages (web/pages.js, docs/api.md "GET /ui/"), read in
headless Chromium as an operator's browser reads them, with data from a live
spated: a function with two versions, an alias with weights and recent
invocations; a Node.js function whose trigger takes batches and sends its
failures to dead letters, logging and failing with markup in its text; a
Redis source; the nodes of a three-node cluster. Text from functions,
payloads and brokers must show as text: markup in it must not run.
Screenshots of every page, at 1280 px and at a phone's width, are kept in
build/test-artifacts/console-*.png."""

import html as htmllib
import json
import re
import time

import pytest

from conftest import BUILD, add_source, wait_for
from natscluster import spated_cluster
from cdp import Browser
from test_runtime_node import deploy_node
from test_sources_redis import redis  # noqa: F401 (a fixture)

# Runs if pages.js inserts it as HTML: the page then carries data-pwned.
XSS = '<img src=x onerror="document.body.dataset.pwned=1">'
XSS2 = "<script>document.body.dataset.pwned=2</script>"

SHOUT = """
exports.handler = async (event) => {
  const recs = Array.isArray(event.Records) ? event.Records.map((r) => r.body) : [event.text];
  for (const text of recs) {
    console.log("shout got " + text);
    if (String(text).includes("fail")) throw new Error("shout refused " + text);
  }
  return {n: recs.length};
};
"""


@pytest.fixture
def browser(tmp_path):
    b = Browser(tmp_path / "chromium-profile")
    yield b
    b.close()


PAGE_DRAWN = "Number(document.getElementById('page').dataset.loads) >= 2"
OVERVIEW_DRAWN = "Number(document.body.dataset.scrapes) >= 3"


def page_dom(b, d, route, ready=PAGE_DRAWN):
    """The page's DOM once ready (a JS expression) holds: a page redraws
    every 2 s, the overview scrapes every second."""
    b.open(f"{d.url}/ui/{route}", 1280, 1400)
    b.wait(ready, timeout=60)
    html = b.dom()
    # Markup from names, errors, payloads or log lines never ran.
    assert b.js("document.body.dataset.pwned") is None, html[-3000:]
    assert "data-pwned" not in html
    return html


def screenshot(b, d, route, name, ready=PAGE_DRAWN, phone=False):
    """Keeps a screenshot of the page, at 1280 px or a phone's 390, as an
    artifact of the run."""
    artifacts = BUILD / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / f"console-{name}{'-phone' if phone else ''}.png"
    shot.unlink(missing_ok=True)
    b.open(f"{d.url}/ui/{route}", *((390, 844) if phone else (1280, 900)), phone=phone)
    b.wait(ready, timeout=60)
    if phone:  # nothing wider than the phone: wide tables scroll in their own box
        assert b.js("document.documentElement.scrollWidth") <= 390, route
    b.screenshot(shot)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    return shot


def section(html, title):
    """The HTML of one page section, by its title."""
    m = re.search(rf'<section class="page-section"><h3>{re.escape(title)}</h3>(.*?)</section>', html, re.S)
    assert m, f"no section {title!r} in {html[-4000:]}"
    return m.group(1)


def rows(fragment):
    """The cells' text of each body row of the tables in fragment."""
    out = []
    for row in re.findall(r"<tr>(.*?)</tr>", fragment, re.S):
        if "<th>" in row:
            continue
        out.append([htmllib.unescape(re.sub(r"<[^>]+>", "", c))
                    for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)])
    return out


def test_recent_invocations_in_the_api(spated, functions):
    d = spated
    assert d.deploy("work", functions["probe"])[0] == 201
    for payload in (b"hello", b"fail", b"hello"):
        d.invoke("work", payload)
    doc = d.describe("work")
    recent = doc["recent"]
    assert [r["outcome"] for r in recent] == ["ok", "error", "ok"], recent
    assert recent[1]["error"] == "probe was asked to fail"
    assert all(r["version"] == 1 and r["duration_ms"] >= 0 and r["request_id"] for r in recent)
    assert recent[0]["time_ms"] >= recent[1]["time_ms"] >= recent[2]["time_ms"]
    # Bounded: the newest 20, newest first.
    for _ in range(25):
        d.invoke("work", b"hello")
    assert len(d.describe("work")["recent"]) == 20
    assert all(r["outcome"] == "ok" for r in d.describe("work")["recent"])
    # The list of functions stays small: no recent there.
    assert "recent" not in d.json("GET", "/v1/functions")[1]["functions"][0]


def test_recent_errors_cut_as_text(spated):
    """An error's start is kept as JSON can carry it: cut to 160 bytes
    without splitting a character, control characters as '?'."""
    d = spated
    deploy_node(d, "long", {"index.js": 'exports.handler = async () => '
                                       '{ throw new Error("line\\nbreak! " + "\u00e9".repeat(300)); };'})
    assert d.invoke("long", b"{}")[0] != 200
    err = d.describe("long")["recent"][0]["error"]  # the answer decoded as UTF-8 JSON
    assert 150 < len(err.encode()) <= 160, err
    assert "line?break! " in err and "\n" not in err
    assert err.endswith("\u00e9"), err[-20:]


def test_recent_errors_are_for_admins(make_spated, functions, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("admin adm-token-0123456789\ninvoke inv-token-0123456789\n")
    d = make_spated("--token-file", str(tokens))
    admin = {"Authorization": "Bearer adm-token-0123456789"}
    status, _, body = d.request("PUT", "/v1/functions/work", functions["probe"].read_bytes(), admin)
    assert status == 201, body
    d.request("POST", "/v1/functions/work/invoke", b"fail", {"Authorization": "Bearer inv-token-0123456789"})
    mine = json.loads(d.request("GET", "/v1/functions/work", None, admin)[2])["recent"]
    theirs = json.loads(d.request("GET", "/v1/functions/work", None,
                                  {"Authorization": "Bearer inv-token-0123456789"})[2])["recent"]
    assert mine[0]["error"] == "probe was asked to fail"
    assert theirs[0]["outcome"] == "error" and "error" not in theirs[0]


def test_console_pages(spated, functions, redis, browser):  # noqa: F811 (redis: a fixture)
    d = spated
    r = redis()
    # work: two versions, an alias sending 10% to the second, invocations.
    assert d.deploy("work", functions["probe"])[0] == 201
    assert d.deploy("work", functions["probe"], timeout=4000)[0] in (200, 201)
    status, doc = d.json("PUT", "/v1/functions/work/aliases/live",
                         json.dumps({"version": 1, "weight_version": 2, "weight_percent": 10}).encode())
    assert status == 201, doc
    for payload in (b"hello", b"fail", b"sleep:20"):
        d.invoke("work", payload)
    # shout: Node.js, a trigger with batches whose failures become dead letters.
    deploy_node(d, "shout", {"index.js": SHOUT})
    status, doc = d.json("PUT", "/v1/triggers/orders/shout?batch_size=5&batch_window=200"
                                "&event_format=sqs&max_attempts=1")
    assert status == 201, doc
    # A failed batch fails all its messages: the failing one goes alone.
    for line in ("one", "two"):
        assert d.request("POST", "/v1/topics/orders/messages", line.encode())[0] in (200, 201, 202)
    assert wait_for(lambda: d.json("GET", "/v1/topics/orders")[1]["acknowledged"] == 2, timeout=60)
    publish = d.request("POST", "/v1/topics/orders/messages", ("please fail " + XSS).encode())
    assert publish[0] in (200, 201, 202), publish
    assert d.invoke("shout", json.dumps({"text": "fail " + XSS2}).encode())[0] != 200
    assert wait_for(lambda: d.json("GET", "/v1/topics/orders.dlq/messages")[1].get("messages"),
                    timeout=60)
    # A Redis source into the same topic.
    status, doc = add_source(d, "orders-in", f"redis://127.0.0.1:{r.port}/orders-stream?group=spate",
                             "orders")
    assert status == 201, doc
    assert wait_for(lambda: d.json("GET", "/v1/sources/orders-in")[1]["connected"], timeout=20)

    # The overview links every name to its page.
    html = page_dom(browser, d, "", OVERVIEW_DRAWN)
    assert 'href="#/function/work"' in html and 'href="#/function/shout"' in html
    assert 'href="#/topic/orders"' in html and 'href="#/source/orders-in"' in html
    assert 'data-page="overview"' in html
    assert 'id="overview-nodes" hidden' in html  # one node: no nodes section
    screenshot(browser, d, "", "overview", OVERVIEW_DRAWN)
    screenshot(browser, d, "", "overview", OVERVIEW_DRAWN, phone=True)

    # The function page: versions, aliases with weights, instances, recent invocations.
    html = page_dom(browser, d, "#/function/work")
    assert 'data-page="function"' in html and 'data-function="work"' in html, html[-3000:]
    versions = rows(section(html, "Versions"))
    assert [r[0] for r in versions] == ["2", "1"] and versions[0][-1] == "active", versions
    assert rows(section(html, "Aliases"))[0][:2] == ["live", "version 1: 90% · version 2: 10%"]
    inst = rows(section(html, "Instances by state"))
    assert inst[0][0] == "2 (active)", inst
    assert "cold starts" in section(html, "Instances by state")
    recent = rows(section(html, "Recent invocations"))
    assert [r[3] for r in recent] == ["ok", "error", "ok"], recent
    assert recent[1][5] == "probe was asked to fail"
    assert all(r[4].endswith(" ms") for r in recent)
    assert "No trigger." in section(html, "Triggers")
    screenshot(browser, d, "#/function/work", "function")
    screenshot(browser, d, "#/function/work", "function", phone=True)

    # shout: its trigger's batch settings, its log tail, its errors as text.
    tailed = (PAGE_DRAWN + " && document.querySelector('.log-status').textContent == 'following'"
              " && document.querySelectorAll('.log-lines li').length >= 4")
    html = page_dom(browser, d, "#/function/shout", tailed)
    trig = rows(section(html, "Triggers"))
    assert trig[0][:6] == ["orders", "5", "200 ms", "sqs", "no", "1"], trig
    assert trig[0][6] == "orders.dlq"
    log = section(html, "Log (live)")
    assert "following" in log, log[:2000]
    assert "shout got one" in log
    assert htmllib.escape("shout got fail " + XSS2, quote=False) in log
    recent = section(html, "Recent invocations")
    assert "shout refused fail" in htmllib.unescape(recent)
    screenshot(browser, d, "#/function/shout", "function-logs", tailed)

    # The topic page: depth, oldest age, in flight, dead letters with their error.
    html = page_dom(browser, d, "#/topic/orders")
    assert 'data-topic="orders"' in html
    assert re.search(r"<dt>depth</dt><dd>\d+</dd>", html) and "<dt>oldest age</dt>" in html
    assert "<dt>in flight</dt>" in html
    dead = rows(section(html, "Dead letters"))
    assert len(dead) == 1, dead
    assert dead[0][2] == "orders" and dead[0][3] == "1"
    assert "shout refused please fail " + XSS in dead[0][4]
    assert dead[0][6] == "please fail " + XSS
    assert htmllib.escape(XSS, quote=False) in html  # shown, as text
    screenshot(browser, d, "#/topic/orders", "topic")
    screenshot(browser, d, "#/topic/orders", "topic", phone=True)

    # The source page: connected, last error, received/committed, lag.
    r.cli("XADD", "orders-stream", "*", "text", "from redis")
    assert wait_for(lambda: d.json("GET", "/v1/sources/orders-in")[1]["committed"] >= 1, timeout=20)
    html = page_dom(browser, d, "#/source/orders-in")
    assert 'data-source="orders-in"' in html
    assert "<dt>connected</dt><dd>yes</dd>" in html and "<dt>last error</dt><dd>none</dd>" in html
    assert re.search(r"<dt>committed</dt><dd>[1-9]\d*</dd>", html)
    assert re.search(r"<dt>lag</dt><dd>\d+</dd>", html)
    screenshot(browser, d, "#/source/orders-in", "source")
    # Its broker gone: not connected, and why.
    r.stop()
    assert wait_for(lambda: d.json("GET", "/v1/sources/orders-in")[1]["last_error"], timeout=30)
    html = page_dom(browser, d, "#/source/orders-in",
                    PAGE_DRAWN + " && !!document.querySelector('.badge.risk')")
    assert "<dt>connected</dt><dd>no</dd>" in html
    shown = re.search(r'<dt>last error</dt><dd><span class="bad error-text">(.*?)</span>', html)
    assert shown and htmllib.unescape(shown.group(1)), html[-3000:]
    screenshot(browser, d, "#/source/orders-in", "source-down")

    # An unknown name says so.
    html = page_dom(browser, d, "#/function/nope", ready="!!document.querySelector('.page-status.bad')")
    assert "not found:" in html


def test_console_nodes(tmp_path_factory, browser):
    with spated_cluster(tmp_path_factory, name="console") as (nats, nodes):
        d = nodes[0]
        assert wait_for(lambda: len(d.json("GET", "/v1/nodes")[1]["nodes"]) == 3
                        and all(n["state"] == "up" for n in d.json("GET", "/v1/nodes")[1]["nodes"]),
                        timeout=30)
        html = page_dom(browser, d, "#/nodes")
        nodes_rows = rows(html[html.index('id="page"'):])
        assert len(nodes_rows) == 3, nodes_rows
        assert nodes_rows[0][0].endswith("(this one)") and all(r[2] == "up" for r in nodes_rows)
        screenshot(browser, d, "#/nodes", "nodes")
        # The overview shows them too, in cluster mode.
        html = page_dom(browser, d, "", OVERVIEW_DRAWN + " && !document.getElementById('overview-nodes').hidden")
        over = re.search(r'<section id="overview-nodes">(.*?)</section>', html, re.S)
        assert over and len(rows(over.group(1))) == 3, html[-3000:]
