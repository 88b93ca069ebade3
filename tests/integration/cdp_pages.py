"""Headless Chromium driven through the DevTools protocol on a pipe
(--remote-debugging-pipe: commands in on fd 3, answers out on fd 4, each a
JSON text ended by a NUL byte), with nothing but the standard library.

For pages that always have a request open (the console's log tail is a long
poll): --dump-dom with --virtual-time-budget waits for the network to be idle
and never ends on them, so here the test waits, in real time, for what the
page says it has drawn, then reads the DOM or takes a screenshot."""

import base64
import fcntl
import json
import os
import select
import subprocess
import time

from test_observability import chromium

MESSAGE_MAX = 64 << 20  # a screenshot of a long page is a few MB of base64


class Browser:
    def __init__(self, profile):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds():  # in the child: its fd 3 reads commands, fd 4 writes answers
            # Out of the way first: a pipe may itself be fd 3 or 4, and
            # dup2 onto itself would leave it close-on-exec.
            r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)

        # CDP_LOG=FILE keeps chromium's own messages, to see why it failed.
        with open(os.environ.get("CDP_LOG", os.devnull), "ab") as log:
            self.proc = subprocess.Popen(
                [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--remote-debugging-pipe", "--window-size=1280,1400",
                 "about:blank"],
                preexec_fn=fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=log)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def call(self, method, params=None, session=None, timeout=60):
        """Sends one command and returns its result; raises on its error."""
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            while b"\0" not in self._buf:
                left = deadline - time.time()
                if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                    raise TimeoutError(f"chromium did not answer {method} within {timeout} s")
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the pipe during {method}")
                self._buf += chunk
                assert len(self._buf) <= MESSAGE_MAX, "an answer from chromium over its limit"
            raw, self._buf = self._buf.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") != self._id:
                continue  # an event, or an earlier command's late answer
            if "error" in answer:
                raise RuntimeError(f"{method}: {answer['error']}")
            return answer.get("result", {})

    def page(self, method, params=None, timeout=60):
        return self.call(method, params, session=self.session, timeout=timeout)

    def open(self, url, width=1280, height=1400, phone=False):
        self.page("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": phone})
        self.page("Page.navigate", {"url": "about:blank"})
        self.page("Page.navigate", {"url": url})

    def js(self, expression):
        r = self.page("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return r.get("result", {}).get("value")

    def wait(self, expression, timeout=60):
        """Waits until expression is true in the page; its last value."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.2)
        return self.js(expression)

    def dom(self):
        return self.js("document.documentElement.outerHTML")

    def screenshot(self, path):
        """A PNG of the whole page (beyond the window too)."""
        data = self.page("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self._to_chrome)
        os.close(self._from_chrome)
