"""Drive a headless Chromium over the DevTools protocol, through a pipe (no port, no extra package).

Chromium started with ``--remote-debugging-pipe`` reads protocol messages on file descriptor 3 and
writes its answers on descriptor 4, each message JSON ended by a NUL byte. That is all this module
needs to open a page, read what the browser logged, evaluate JavaScript and take a screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

#: Executables tried in order when no path is given (``BOOK_BROWSER`` overrides them).
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(RuntimeError):
    """The browser could not be started, or did not answer in time."""


def find_browser() -> str | None:
    """Path of a Chromium-family browser: ``$BOOK_BROWSER``, else the first of ``BROWSER_NAMES``
    on ``PATH``; ``None`` when there is none."""
    env = os.environ.get("BOOK_BROWSER")
    if env:
        return env if Path(env).exists() else shutil.which(env)
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Chromium:
    """A headless Chromium and one page in it.

    Parameters
    ----------
    executable : str
        The browser's path, e.g. from :func:`find_browser`.
    width, height : int
        Viewport size in CSS pixels (also the size of screenshots).
    timeout : float
        Seconds to wait for any one answer of the browser.
    """

    def __init__(self, executable: str, width: int = 1280, height: int = 900, timeout: float = 30.0):
        import fcntl  # POSIX only, as is the pipe hand-over below

        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="book-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def _fds() -> None:  # in the child: the pipe ends become descriptors 3 and 4
            a = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [executable, "--headless", "--remote-debugging-pipe", "--no-sandbox",
                "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
                "--mute-audio", f"--user-data-dir={self._profile}",
                f"--window-size={width},{height}", "about:blank"]
        try:
            self._proc = subprocess.Popen(args, preexec_fn=_fds, close_fds=False,
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)
        except OSError as exc:
            raise BrowserError(f"could not start {executable}: {exc}") from exc
        finally:
            os.close(to_browser_r)
            os.close(from_browser_w)
        self._next_id = 0
        self._answers: dict[int, dict] = {}
        self.events: list[dict] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"]
        for method in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            self.send(method, session=True)
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                  "deviceScaleFactor": 1, "mobile": False}, session=True)

    def _read(self) -> None:
        buf = b""
        with os.fdopen(self._from_browser, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                buf += chunk
                *messages, buf = buf.split(b"\0")
                with self._cond:
                    for raw in messages:
                        msg = json.loads(raw)
                        if "id" in msg:
                            self._answers[msg["id"]] = msg
                        else:
                            self.events.append(msg)
                    self._cond.notify_all()

    def send(self, method: str, params: dict | None = None, session: bool = False) -> dict:
        """Send one protocol command and wait for its result (raises on a protocol error)."""
        with self._cond:
            self._next_id += 1
            ident = self._next_id
        msg: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while ident not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0 or self._proc.poll() is not None:
                    raise BrowserError(f"no answer from the browser to {method} within "
                                       f"{self.timeout:.0f} s (exit code {self._proc.poll()})")
                self._cond.wait(min(left, 0.5))
            answer = self._answers.pop(ident)
        if "error" in answer:
            raise BrowserError(f"{method} failed: {answer['error']}")
        return answer.get("result", {})

    def evaluate(self, expression: str) -> Any:
        """Value of a JavaScript expression in the page (awaited when it is a promise)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                           "awaitPromise": True}, session=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"script failed: {result['exceptionDetails'].get('text')}: "
                               f"{result['result'].get('description', '')}")
        return result["result"].get("value")

    def open(self, url: str, ready: str = "true", timeout: float | None = None) -> None:
        """Load ``url`` and wait until its load event fired and the expression ``ready`` is true."""
        with self._cond:
            self.events.clear()
        self.send("Page.navigate", {"url": url}, session=True)
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            with self._cond:
                loaded = any(e.get("method") == "Page.loadEventFired" for e in self.events)
            if loaded and self.evaluate(f"Boolean({ready})"):
                return
            time.sleep(0.1)
        raise BrowserError(f"{url} did not become ready ({ready}) within {timeout or self.timeout} s")

    def console_errors(self) -> list[str]:
        """Errors the page logged since it was opened: console.error calls, uncaught exceptions,
        and the browser's own error entries (failed loads, blocked requests)."""
        errors = []
        with self._cond:
            events = list(self.events)
        for e in events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                       for a in p.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                errors.append(d.get("exception", {}).get("description") or d.get("text", ""))
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                entry = p["entry"]
                errors.append(f"{entry.get('text', '')} {entry.get('url', '')}".strip())
        return errors

    def requests(self) -> list[str]:
        """URLs the page asked for since it was opened (``data:`` URLs left out)."""
        with self._cond:
            return [e["params"]["request"]["url"] for e in self.events
                    if e.get("method") == "Network.requestWillBeSent"
                    and not e["params"]["request"]["url"].startswith("data:")]

    def screenshot(self, path: str | Path) -> Path:
        """Write a PNG of the viewport to ``path``."""
        data = self.send("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """Stop the browser and remove its profile."""
        try:
            self.send("Browser.close")
        except (BrowserError, OSError):
            pass
        try:
            os.close(self._to_browser)
        except OSError:
            pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
