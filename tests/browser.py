"""Drive headless Chromium over the DevTools protocol: open a report, check it, screenshot it.

No Python dependency beyond the standard library: Chromium is started with
``--remote-debugging-pipe`` and the DevTools messages (NUL-terminated JSON) travel over two
pipes, so there is no port, no websocket client and nothing that reaches the network.
Used by the browser tests and to take the README screenshot:

    python -m tests.browser artifacts/goemotions-local/report/index.html docs/report-goemotions.png

Chromium is found as ``$PROBEKIT_CHROMIUM``, else ``chromium``, ``chromium-browser``,
``google-chrome`` or ``google-chrome-stable`` on the PATH (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import logging
import os
import queue
import re
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

from probekit.core.errors import ProbekitError

logger = logging.getLogger(__name__)

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars")


def find_chromium() -> str | None:
    """The Chromium executable, or None when there is none."""
    env = os.environ.get("PROBEKIT_CHROMIUM")
    if env:
        return env if Path(env).is_file() else shutil.which(env)
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


def needs_chromium():
    """The pytest mark of a browser test module: skip it, with the reason, where no Chromium is found."""
    import pytest
    return pytest.mark.skipif(find_chromium() is None, reason="no Chromium on this machine (apt-get install "
                              "chromium, or set PROBEKIT_CHROMIUM); .ci/run installs it")


@contextlib.contextmanager
def report_page(html_path: str | Path, html_text: str, settle: float = 0.3):
    """Open a report in a 1280x1000 Chromium; yield the browser and the page's embedded UMAP data."""
    data = json.loads(re.search(r'id="umap-data">(.*?)</script>', html_text, re.S).group(1))
    with Browser(width=1280, height=1000) as b:
        b.open(html_path)
        time.sleep(settle)  # let the map draw and any (unwanted) handler fire
        yield b, data


class Browser:
    """One headless Chromium with one page, driven over the DevTools pipe.

    Console errors, uncaught exceptions and JavaScript dialogs (alert, confirm) are collected
    in :attr:`errors` and :attr:`dialogs`; a dialog is dismissed at once. A context manager:
    ``with Browser() as b: b.open("report/index.html"); n = b.eval("document.title")``."""

    def __init__(self, executable: str | None = None, width: int = 1280, height: int = 900, timeout: float = 30.0):
        exe = executable or find_chromium()
        if not exe:
            raise FileNotFoundError("no Chromium found: apt-get install chromium, "
                                    "or set PROBEKIT_CHROMIUM to its path.")
        self.timeout = timeout
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self._events: queue.Queue = queue.Queue()
        self._replies: dict[int, dict] = {}
        self._cond = threading.Condition()
        self._next_id = 0
        self._profile = tempfile.mkdtemp(prefix="probekit-chromium-")
        # Chromium reads commands on fd 3 and writes replies on fd 4. posix_spawn wires the pipe
        # ends there (moved above fd 9 first, so neither dup2 clobbers the other); no Python
        # runs in the child (preexec_fn is unsafe once threads exist, e.g. wandb's).
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        child_r, child_w = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_chrome_r, from_chrome_w))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        args = [exe, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self._profile}",
                f"--window-size={width},{height}", "about:blank"]
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
                   (os.POSIX_SPAWN_DUP2, child_r, 3), (os.POSIX_SPAWN_DUP2, child_w, 4)]
        try:
            self._pid = os.posix_spawn(exe, args, dict(os.environ), file_actions=actions)
        finally:
            os.close(child_r)
            os.close(child_w)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self._attach(width, height)
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_chrome, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._replies[-1] = {"error": {"message": "Chromium closed the DevTools pipe"}}
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cond:
                        self._replies[msg["id"]] = msg
                        self._cond.notify_all()
                else:
                    self._on_event(msg)

    def _on_event(self, msg: dict) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.errors.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append("console.error: " + " ".join(str(a.get("value", a.get("description")))
                                                           for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}".strip())
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append(f"{params.get('type')}: {params.get('message')}")
            self.send_async("Page.handleJavaScriptDialog", {"accept": False})
        self._events.put(msg)

    def send_async(self, method: str, params: dict | None = None) -> int:
        with self._cond:
            self._next_id += 1
            msg_id = self._next_id
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if getattr(self, "_session", None):
            msg["sessionId"] = self._session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        return msg_id

    def send(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        """Send one DevTools command and wait for its result."""
        saved = getattr(self, "_session", None)
        if not session:
            self._session = None
        try:
            msg_id = self.send_async(method, params)
        finally:
            self._session = saved
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while msg_id not in self._replies and -1 not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"Chromium did not answer {method} within {self.timeout:.0f}s")
                self._cond.wait(left)
            reply = self._replies.pop(msg_id, None) or self._replies[-1]
        if "error" in reply:
            raise ProbekitError(f"Chromium: {method} failed: {reply['error'].get('message')}")
        return reply.get("result", {})

    def _attach(self, width: int, height: int) -> None:
        self._session = None
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def _wait_event(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {method} from Chromium within {self.timeout:.0f}s")
            try:
                msg = self._events.get(timeout=left)
            except queue.Empty:
                continue
            if msg.get("method") == method:
                return msg

    def open(self, path: str | Path) -> None:
        """Load a local file and wait for its load event."""
        while not self._events.empty():
            self._events.get_nowait()
        self.send("Page.navigate", {"url": Path(path).resolve().as_uri()})
        self._wait_event("Page.loadEventFired")

    def eval(self, expression: str):
        """Evaluate a JavaScript expression in the page; return its value (JSON-able)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise ProbekitError(f"JavaScript failed: {result['exceptionDetails'].get('text')} in {expression[:80]!r}")
        return result.get("result", {}).get("value")

    def hover(self, selector: str) -> None:
        """Scroll the first element matching `selector` into view and move the mouse onto its centre."""
        box = self.eval(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            if (!e) return null; e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2]; }})()""")
        if box is None:
            raise ProbekitError(f"no element matches {selector!r}")
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": box[0], "y": box[1]})

    def screenshot(self, path: str | Path, full_page: bool = False) -> Path:
        """Save a PNG of the viewport (or of the whole page) to `path`."""
        params: dict = {"format": "png"}
        if full_page:
            w, h = self.eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": w, "height": h, "scale": 1})
        data = self.send("Page.captureScreenshot", params)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def _exited(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if os.waitpid(self._pid, os.WNOHANG)[0]:
                    return True
            except ChildProcessError:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def close(self) -> None:
        """Close Chromium (killing it if it does not quit within 5 s) and remove its profile."""
        try:
            if not self._exited(0):
                self._session = None
                with contextlib.suppress(OSError):
                    self.send_async("Browser.close")
                if not self._exited(5):
                    os.kill(self._pid, signal.SIGKILL)
                    self._exited(5)
        finally:
            for fd in (self._to_chrome, self._from_chrome):
                with contextlib.suppress(OSError):
                    os.close(fd)
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def screenshot_report(html_path: str | Path, png_path: str | Path, width: int = 1280, height: int = 1800) -> Path:
    """Open a report in headless Chromium and save a screenshot of its top `height` pixels."""
    with Browser(width=width, height=height) as b:
        b.open(html_path)
        out = b.screenshot(png_path)
        if b.errors:
            logger.warning("the page logged errors: %s", "; ".join(b.errors))
    logger.info("screenshot of %s -> %s", html_path, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshot a report page with headless Chromium.")
    parser.add_argument("html")
    parser.add_argument("png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1800)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    screenshot_report(args.html, args.png, args.width, args.height)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
