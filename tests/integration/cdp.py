"""Headless Chromium driven over the DevTools protocol on a pipe
(--remote-debugging-pipe: JSON messages ended by NUL, read on fd 3, written
on fd 4), so a test can type, click and read a page as a person does, with
no library beyond Python's own. The one driver of the console's tests and
of bench/console.

Pages that always have a request open (the console's log tail is a long
poll) never go network-idle, so nothing here waits for that: a test waits,
in real time, for what the page says it has drawn (wait), then reads the
DOM (dom) or takes a screenshot. CDP_LOG=FILE keeps Chromium's own
messages, to see why it failed."""

import base64
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

MESSAGE_MAX = 64 << 20  # a screenshot of a long page is a few MB of base64


def chromium():
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("chromium is not installed (scripts/install-deps.sh installs it)")


class Browser:
    """One headless Chromium and one page in it."""

    def __init__(self, profile, width=1280, height=1000, args=()):
        to_r, self._to = os.pipe()  # we write, Chromium reads on fd 3
        self._from, from_w = os.pipe()  # Chromium writes on fd 4
        # High numbers first, so the dup2s below cannot overwrite each other.
        hi_r = fcntl.fcntl(to_r, fcntl.F_DUPFD, 50)
        hi_w = fcntl.fcntl(from_w, fcntl.F_DUPFD, 50)
        os.close(to_r)
        os.close(from_w)

        def child():
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        with open(os.environ.get("CDP_LOG", os.devnull), "ab") as log:
            self.proc = subprocess.Popen(
                [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                 f"--window-size={width},{height}", "--remote-debugging-pipe", *args,
                 "about:blank"],
                pass_fds=(3, 4), preexec_fn=child, stdout=subprocess.DEVNULL, stderr=log)
        os.close(hi_r)
        os.close(hi_w)
        self._id = 0
        self._results = {}
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
        self.send("Page.enable", session=True)
        self.send("Runtime.enable", session=True)
        self.size(width, height)

    def _read(self):
        data = b""
        while True:
            chunk = os.read(self._from, 1 << 16)
            if not chunk:
                with self._cv:
                    self._results[None] = "chromium closed the pipe"
                    self._cv.notify_all()
                return
            data += chunk
            if b"\0" not in data and len(data) > MESSAGE_MAX:
                with self._cv:
                    self._results[None] = f"a message from chromium over {MESSAGE_MAX} bytes"
                    self._cv.notify_all()
                return
            while b"\0" in data:
                msg, data = data.split(b"\0", 1)
                doc = json.loads(msg)
                if "id" in doc:
                    with self._cv:
                        self._results[doc["id"]] = doc
                        self._cv.notify_all()

    def send(self, method, params=None, session=False, timeout=60):
        self._id += 1
        mid = self._id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session if session is True else session
        os.write(self._to, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        with self._cv:
            while mid not in self._results:
                if None in self._results:
                    raise RuntimeError(f"{self._results[None]} during {method}")
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError(f"chromium did not answer {method}")
                self._cv.wait(left)
            doc = self._results.pop(mid)
        if "error" in doc:
            raise RuntimeError(f"{method}: {doc['error']}")
        return doc["result"]

    def another_page(self, url):
        """Opens url in one more page (bench/console: pages side by side) and
        returns its session, for send(..., session=...)."""
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        return self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def size(self, width, height, mobile=False):
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
                  session=True)

    def open(self, url, width=None, height=None, phone=False):
        """Loads url afresh (through about:blank: a URL differing from the
        page's only in its hash would not load it again), at width x height
        (a phone's viewport when phone) when given."""
        if width:
            self.size(width, height, mobile=phone)
        self.send("Page.navigate", {"url": "about:blank"}, session=True)
        self.send("Page.navigate", {"url": url}, session=True)
        self.wait("document.readyState === 'complete'")

    def eval(self, expr):
        """The value of a JavaScript expression in the page (promises awaited)."""
        r = self.send("Runtime.evaluate", {"expression": expr, "awaitPromise": True,
                                           "returnByValue": True}, session=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def js(self, expr):
        return self.eval(expr)

    def dom(self):
        return self.eval("document.documentElement.outerHTML")

    def wait(self, expr, timeout=30):
        """Waits until expr is true in the page and returns its value;
        TimeoutError, with the end of the page's DOM, when it never is."""
        deadline = time.time() + timeout
        while True:
            v = self.eval(expr)
            if v:
                return v
            if time.time() > deadline:
                tail = (self.dom() or "")[-3000:]
                raise TimeoutError(f"page never had: {expr} (last {v!r}); its DOM ends: {tail}")
            time.sleep(0.2)

    def screenshot(self, path):
        r = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                      session=True)
        png = base64.b64decode(r["data"])
        path.write_bytes(png)
        return png

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to)
        os.close(self._from)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
