"""A real headless Chromium driven over the DevTools protocol (no internet, no downloaded
browser): open a local page, record its network requests, console errors, exceptions and
dialogs, run JavaScript, click and type like a user, take screenshots.

Import into a test module: ``from browser import Browser, chromium_path``.
Chromium comes from the Debian ``chromium`` package (scripts/setup-system.sh); set
PERTCONTRAST_CHROMIUM to use another binary.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
    "--window-size=1400,1000", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
)
START_TIMEOUT = 60.0


def chromium_path() -> str | None:
    candidates = [os.environ.get("PERTCONTRAST_CHROMIUM"), "/usr/bin/chromium",
                  shutil.which("chromium"), shutil.which("chromium-browser")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def artifacts_folder() -> Path:
    """Where tests keep screenshots: PERTCONTRAST_TEST_ARTIFACTS, default <repo>/test-artifacts."""
    default = Path(__file__).resolve().parents[2] / "test-artifacts"
    folder = Path(os.environ.get("PERTCONTRAST_TEST_ARTIFACTS", default))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Browser:
    """One Chromium process with one page. Use as a context manager."""

    def __init__(self, executable: str | None = None, timeout: float = 30.0):
        self.executable = executable or chromium_path()
        if not self.executable:
            raise RuntimeError("Chromium not found: run scripts/setup-system.sh or set PERTCONTRAST_CHROMIUM")
        self.timeout = timeout
        self.requests: list[str] = []
        self.console_errors: list[str] = []
        self.exceptions: list[str] = []
        self.dialogs: list[str] = []
        self.log_errors: list[str] = []
        self._events: list[dict] = []
        self._next_id = 0

    # -- process -------------------------------------------------------------------------
    def __enter__(self) -> "Browser":
        self._profile = tempfile.mkdtemp(prefix="pertcontrast-chromium-")
        self._process = subprocess.Popen(
            [self.executable, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            self._connect()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if getattr(self, "_socket", None) is not None:
            self._socket.close()
        process = self._process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(self._profile, ignore_errors=True)

    def _connect(self) -> None:
        import websocket

        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        while not port_file.exists() or not port_file.read_text().strip():
            if self._process.poll() is not None:
                raise RuntimeError(f"Chromium exited with code {self._process.returncode} before it started")
            if time.monotonic() > deadline:
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost: never a proxy
        with opener.open(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout) as response:
            pages = [t for t in json.load(response) if t.get("type") == "page"]
        self._socket = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=self.timeout,
                                                   suppress_origin=True)
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.send(f"{domain}.enable")

    # -- protocol ------------------------------------------------------------------------
    def send(self, method: str, **params) -> dict:
        self._next_id += 1
        message_id = self._next_id
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = self._receive()
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
        raise TimeoutError(f"no answer to {method}")

    def wait_for(self, event: str, timeout: float | None = None) -> dict:
        for i, seen in enumerate(self._events):
            if seen["method"] == event:
                return self._events.pop(i)["params"]
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            message = self._receive()
            if message.get("method") == event:
                self._events.remove(message)
                return message["params"]
        raise TimeoutError(f"no {event} event")

    def _receive(self) -> dict:
        message = json.loads(self._socket.recv())
        method = message.get("method")
        if method:
            self._record(method, message.get("params", {}))
            self._events.append(message)
        return message

    def _record(self, method: str, params: dict) -> None:
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.exceptions.append(details.get("exception", {}).get("description") or details.get("text", ""))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.log_errors.append(f"{params['entry'].get('source')}: {params['entry'].get('text')}")
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append(params.get("message", ""))
            self._socket.send(json.dumps({"id": 0, "method": "Page.handleJavaScriptDialog",
                                          "params": {"accept": False}}))

    # -- user actions --------------------------------------------------------------------
    def open(self, path: str | Path) -> str:
        url = Path(path).resolve().as_uri()
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")
        self.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        return url

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript failed: {result['exceptionDetails'].get('text')}: {expression[:200]}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the first element matching ``selector``."""
        box = self.evaluate(f"""(() => {{
            const el = document.querySelector({json.dumps(selector)});
            if (!el) return null;
            el.scrollIntoView({{block: "center"}});
            const r = el.getBoundingClientRect();
            return {{x: r.left + r.width / 2, y: r.top + r.height / 2}};
        }})()""")
        if box is None:
            raise AssertionError(f"nothing matches {selector}")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left", clickCount=1)

    def type_into(self, selector: str, text: str) -> None:
        """Focus the element and type ``text`` (replacing what it held)."""
        self.evaluate(f"(() => {{ const el = document.querySelector({json.dumps(selector)}); "
                      "el.focus(); el.select(); })()")
        if text:
            self.send("Input.insertText", text=text)
        else:
            self.send("Input.dispatchKeyEvent", type="keyDown", key="Backspace", code="Backspace",
                      windowsVirtualKeyCode=8)
            self.send("Input.dispatchKeyEvent", type="keyUp", key="Backspace", code="Backspace",
                      windowsVirtualKeyCode=8)

    def screenshot(self, path: str | Path, selector: str | None = None) -> Path:
        """PNG of the viewport, or of the element matching ``selector`` (whole element)."""
        params = {"format": "png"}
        if selector:
            box = self.evaluate(f"""(() => {{
                window.scrollTo(0, 0);  // sticky headers back at the top, not over the element
                const el = document.querySelector({json.dumps(selector)});
                const r = el.getBoundingClientRect();
                return {{x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height}};
            }})()""")
            params.update(clip={**box, "scale": 1}, captureBeyondViewport=True)
        data = self.send("Page.captureScreenshot", **params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path
