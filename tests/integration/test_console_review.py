"""An adversarial pass over the operator's console (issue 19): what a page
of another site, a hostile function and a stray link can make of /ui/ and
the API it reads. Each test failed before its fix."""

import json
import time

from conftest import wait_for

ADMIN = "adm1n-token-0123456789"


def test_a_page_of_another_site_cannot_act_through_the_browser(spated):
    # Without a token file, spated trusts the host's users, and a browser on
    # the host is one: a page of another site could POST (no preflight for
    # text/plain) to publish, invoke, redrive or roll back.
    d = spated
    for origin in ("http://evil.example", "null", f"http://localhost:{d.port}"):
        status, _, body = d.request("POST", "/v1/topics/csrf/messages", b"{}",
                                    headers={"Origin": origin, "Content-Type": "text/plain"})
        doc = json.loads(body)
        assert status == 403 and doc["code"] == "cross_site", (origin, status, doc)
        assert "another site" in doc["error"] and origin in doc["error"]
    assert d.request("GET", "/v1/topics/csrf")[0] == 404  # nothing was published
    # The console itself (same origin) still acts.
    status, _, body = d.request("POST", "/v1/topics/csrf/messages", b"{}",
                                headers={"Origin": d.url, "Content-Type": "application/json"})
    assert status in (200, 201, 202), body


def test_a_name_re_pointed_at_the_loopback_gets_no_tokenless_trust(spated):
    # DNS rebinding: evil.example resolves to 127.0.0.1 after the page
    # loads; its script is then same-origin with "spated" and sends no
    # Origin, but its Host is evil.example.
    d = spated
    status, _, body = d.request("GET", "/v1/functions", headers={"Host": f"evil.example:{d.port}"})
    doc = json.loads(body)
    assert status == 403 and "evil.example" in doc["error"] and "address" in doc["error"], doc
    for host in (f"127.0.0.1:{d.port}", f"localhost:{d.port}", "t", f"[::1]:{d.port}",
                 f"spate.localhost:{d.port}"):
        assert d.request("GET", "/v1/functions", headers={"Host": host})[0] == 200, host


def test_with_a_token_file_a_name_is_fine_with_a_token(make_spated, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin {ADMIN}\n")
    d = make_spated("--token-file", str(tokens))
    auth = {"Authorization": "Bearer " + ADMIN}
    assert d.request("GET", "/v1/functions", headers={**auth, "Host": "spate.example.org"})[0] == 200
    # But never from another site's page, token or not (a client certificate
    # the browser attaches by itself is as good as a token).
    status, _, body = d.request("POST", "/v1/topics/x/redrive",
                                headers={**auth, "Origin": "https://evil.example"})
    assert status == 403 and json.loads(body)["code"] == "cross_site"


READ = "pub-token-0123456789"


def test_tokens_stay_in_page_memory_and_the_log_tail_uses_the_admin_token(make_spated, tmp_path,
                                                                            functions):
    from cdp import Browser

    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin {ADMIN}\npublish {READ}\n")
    d = make_spated("--token-file", str(tokens))
    admin = {"Authorization": "Bearer " + ADMIN}
    so = functions["hello"].read_bytes()
    assert d.request("PUT", "/v1/functions/app", so, headers=admin)[0] in (200, 201)
    assert d.request("POST", "/v1/functions/app/invoke", b"{}", headers=admin)[0] == 200
    with Browser(tmp_path / "profile") as b:
        # An operator whose token file holds admin tokens only types one
        # where the page asks for a token to read: it was kept in
        # sessionStorage, for any script of the origin and past a reload.
        b.open(f"{d.url}/ui/")
        b.wait("!document.getElementById('login').hidden")
        b.eval(f"document.getElementById('token').value = '{ADMIN}'")
        b.eval("document.querySelector('#login button').click()")
        b.wait("document.body.dataset.scrapes >= 1")
        stored = b.eval("JSON.stringify(Object.values(sessionStorage)) + "
                        "JSON.stringify(Object.values(localStorage)) + document.cookie")
        assert ADMIN not in stored, stored

        # A read token for the pages, the admin token in the actions form:
        # the function page's log (admin scope) follows with the latter.
        b.eval("sessionStorage.clear()")
        b.open(f"{d.url}/ui/")
        b.wait("!document.getElementById('login').hidden")
        b.eval(f"document.getElementById('token').value = '{READ}'")
        b.eval("document.querySelector('#login button').click()")
        b.eval(f"document.getElementById('admin-token').value = '{ADMIN}'")
        b.eval("document.querySelector('#admin-token-form button[type=submit]').click()")
        b.eval("location.hash = '#/function/app'")
        try:
            b.wait("document.querySelector('.log-status') && "
                   "document.querySelector('.log-status').textContent == 'following'", timeout=30)
        except TimeoutError:
            raise AssertionError(b.eval("document.querySelector('.log-status').textContent"))


def test_the_hash_router_reads_no_other_path(spated, tmp_path):
    # "#/function/.." made the page fetch /v1/functions/.., which the
    # browser turns into /v1/ (and its log tail into /v1/logs) with the
    # user's token; a broken %-escape threw in the router and left the page
    # as it was.
    from cdp import Browser

    d = spated
    with Browser(tmp_path / "profile") as b:
        for h in ("#/function/..", "#/topic/.", "#/function/a%2F..%2F..%2Fv1%2Fhealth",
                  "#/source/%E0%A4%A", "#/function/%", "#/function/" + "a" * 100000):
            b.open(f"{d.url}/ui/{h}")
            try:
                b.wait("document.body.dataset.page == 'bad-name'", timeout=10)
            except TimeoutError:
                raise AssertionError((h[:40], b.eval("document.body.dataset.page"),
                                      b.eval("document.getElementById('page').textContent")[:300]))
            text = b.eval("document.getElementById('page').textContent")
            assert "not a " in text and "name" in text, text[:300]
        # A good name after a bad one: the page is drawn.
        b.eval("location.hash = '#/nodes'")
        b.wait("document.body.dataset.page == 'nodes' && document.getElementById('page').dataset.loads >= 1")


def test_history_readers_cannot_hold_the_loop(spated):
    # 1,000 topics whose oldest age changes every second: a row each a
    # second. An answer was up to 8 MiB, written on the loop (some 30 ms a
    # MiB): 50 readers at once held every other request for seconds.
    import http.client
    from concurrent.futures import ThreadPoolExecutor

    d = spated

    def publish(i):
        return d.request("POST", f"/v1/topics/topic-number-{i:04d}/messages", b"x")[0]

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(publish, range(1000))) == {202}

    def big():
        status, _, body = d.request("GET", "/v1/history")
        doc = json.loads(body)
        return (len(body), doc) if status == 200 and (doc["truncated"] or len(body) > 5 << 18) else None

    got = wait_for(big, timeout=240, step=2)
    assert got, "the history never passed 1 MiB"
    size, doc = got
    assert size <= (1 << 20) + (64 << 10) and doc["truncated"], size
    # The rest, answer by answer from next_since.
    status, _, body = d.request("GET", f"/v1/history?since={doc['next_since']}&delta=1")
    assert status == 200 and json.loads(body)["samples"][0]["full"] is False

    import threading

    def burst():
        # Forty readers asking at once (the barrier: on a loaded machine
        # threads started one by one were served one by one), up to three times.
        ready = threading.Barrier(40)

        def read(_):
            c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=120)
            try:
                c.connect()
                ready.wait(60)
                c.request("GET", "/v1/history")
                r = c.getresponse()
                return r.status, r.read()
            finally:
                c.close()

        with ThreadPoolExecutor(40) as pool:
            return list(pool.map(read, range(40)))

    for _ in range(3):
        began = time.monotonic()
        answers = burst()
        took = time.monotonic() - began
        statuses = [s for s, _ in answers]
        assert 200 in statuses and set(statuses) <= {200, 503}, statuses
        if 503 in statuses:
            break
        # None refused: on a loaded machine (the ASan build beside other
        # tests) the loop wrote no more than the 8 MiB a second it allows.
        # Then the answers took at least as long as that budget says.
        served = sum(len(b) for _, b in answers)
        most = max(len(b) for _, b in answers)
        assert served <= (took + 1) * ((8 << 20) + most), (served, took)
    else:
        return
    busy = json.loads(next(b for s, b in answers if s == 503))
    assert busy["code"] == "busy" and "ask again in a second" in busy["error"], busy


def test_a_hostile_function_cannot_script_or_break_the_page(spated, functions, tmp_path):
    from cdp import Browser

    d = spated
    st, doc = d.deploy("evil", functions["console_hostile"])
    assert st in (200, 201), doc
    with Browser(tmp_path / "profile") as b:
        b.open(f"{d.url}/ui/#/function/evil")
        b.wait("document.querySelector('.log-status') && "
               "document.querySelector('.log-status').textContent == 'following'")
        for _ in range(3):  # while the page tails the log
            assert d.invoke("evil")[0] >= 400
        b.wait("document.querySelectorAll('.log-lines li').length >= 400")
        b.wait("document.querySelectorAll('table.recent tbody tr').length >= 3")
        loads = b.eval("Number(document.getElementById('page').dataset.loads)")
        b.wait(f"Number(document.getElementById('page').dataset.loads) > {loads}")  # still live
        assert "pwned" not in b.eval("document.title")
        assert b.eval("document.querySelectorAll('#page img, #page script').length") == 0
        assert b.eval("document.querySelectorAll('.log-lines li').length") <= 500
        longest = b.eval("Math.max(...[...document.querySelectorAll('.log-text')]"
                         ".map((e) => e.textContent.length))")
        assert longest <= 8192, longest  # the line is cut (SPATE_LOG_LINE_MAX)
        err = b.eval("document.querySelector('table.recent .error-text').textContent")
        assert "<img src=x" in err, err
        assert not any(ord(c) < 0x20 for c in err), repr(err)
        b.screenshot(tmp_path / "hostile.png")
        # The overview stays drawn too.
        b.eval("location.hash = '#/'")
        b.wait("document.getElementById('fn-evil') !== null")
        assert "pwned" not in b.eval("document.title")


def test_the_console_cannot_be_framed_and_runs_only_its_own_files(spated, tmp_path):
    # Defence in depth: no frame by another site (a click there would be an
    # action here), and markup that ever reached the page as HTML runs nothing.
    from cdp import Browser

    d = spated
    status, headers, _ = d.request("GET", "/ui/")
    assert status == 200
    assert headers.get("X-Frame-Options") == "DENY", headers
    assert "frame-ancestors 'none'" in headers.get("Content-Security-Policy", ""), headers
    with Browser(tmp_path / "profile") as b:
        b.open(f"{d.url}/ui/")
        b.wait("document.body.dataset.scrapes >= 1")  # the page works under its policy
        b.eval("document.body.insertAdjacentHTML('beforeend', "
               "'<img src=x onerror=\"window.ran = 1\"><a id=j href=\"javascript:window.ran=2\">j</a>')")
        b.eval("document.getElementById('j').click()")
        b.eval("new Promise((r) => setTimeout(r, 500))")
        assert b.eval("window.ran === undefined")
