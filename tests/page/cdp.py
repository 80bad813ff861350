"""A small Chrome DevTools Protocol client for the page tests: headless Chromium driven over
``--remote-debugging-pipe`` (the protocol's JSON messages, each ended by a NUL byte, on the browser's fds 3 and 4:
no port, no websocket library).

    with Browser.start(chromium) as browser:
        page = browser.open(url)
        page.evaluate("document.title")
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import tempfile
import time
from typing import Any


class CdpError(RuntimeError):
    """The browser answered a command with an error, or did not answer in time."""


class Browser:
    """A headless Chromium and the pipe to it; events are kept per session for :meth:`Page.events`."""

    def __init__(self, process: subprocess.Popen, send: int, receive: int, profile: tempfile.TemporaryDirectory):
        self.process, self.send_fd, self.receive_fd, self.profile = process, send, receive, profile
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    @classmethod
    def start(cls, executable: str, width: int = 1280, height: int = 900) -> Browser:
        """Starts ``executable`` headless with the debugging pipe on its fds 3 (commands in) and 4 (replies out)."""
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        profile = tempfile.TemporaryDirectory(prefix="syngen-chromium-")
        flags = [
            "--headless",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile.name}",
            f"--window-size={width},{height}",
            "about:blank",
        ]

        # bash moves the pipe ends to fds 3 and 4, where --remote-debugging-pipe looks for them (bash, not sh:
        # dash takes single-digit fds only)
        script = f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w} {to_browser_r}<&- {from_browser_w}>&-'
        process = subprocess.Popen(
            ["bash", "-c", script, executable, *flags],
            pass_fds=(to_browser_r, from_browser_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        return cls(process, to_browser_w, from_browser_r, profile)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def command(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
                timeout: float = 30) -> dict[str, Any]:  # fmt: skip
        """Sends a command and returns its result (events that arrive meanwhile are kept)."""
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.send_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str, timeout: float = 30) -> dict[str, Any]:
        """The first event ``method`` of ``session`` (already received or the next to come)."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            self.events.append(self._receive(deadline))

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.receive_fd], [], [], left)[0]:
                raise CdpError("the browser did not answer in time")
            chunk = os.read(self.receive_fd, 1 << 16)
            if not chunk:
                raise CdpError(f"the browser closed the pipe (exit code {self.process.poll()})")
            self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)

    def open(self, url: str) -> Page:
        """A new tab with console and exception reporting on, navigated to ``url`` and loaded."""
        target = self.command("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.command("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.command(f"{domain}.enable", session=session)
        self.command("Page.navigate", {"url": url}, session)
        self.wait_for("Page.loadEventFired", session)
        return Page(self, session)

    def close(self) -> None:
        with contextlib.suppress(CdpError, OSError):
            self.command("Browser.close", timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self.send_fd, self.receive_fd):
            os.close(fd)
        self.profile.cleanup()


class Page:
    """One tab: evaluate JavaScript, click, read the console errors."""

    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (JSON-serialisable); a thrown exception becomes a CdpError."""
        result = self.browser.command(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}, self.session
        )
        if "exceptionDetails" in result:
            raise CdpError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (pressed and released) at the centre of the first element matching ``selector``."""
        found = json.dumps(selector)
        box = self.evaluate(
            f"(() => {{const e = document.querySelector({found}); e.scrollIntoView({{block: 'center'}});"
            " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2];})()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.browser.command(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1},
                self.session,
            )

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries of this tab so far."""
        self.evaluate("0")  # a round trip, so events sent before now have arrived
        found = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                found.append(str(params["exceptionDetails"].get("exception", {}).get("description")))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(params["entry"].get("text", ""))
        return found
