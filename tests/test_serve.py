"""`tuitrain serve` in a real browser: headless Chromium opens the page, the dashboard appears, a key reaches the app.

Skipped (with the reason) where Chromium, its driver, selenium or textual-serve is missing; `.ci/run`
installs them. The terminal in the page draws on a canvas, so the test reads what the app sends it:
a script in the page keeps a copy of every frame that arrives on the app's WebSocket.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
MISSING = [
    name
    for name, ok in (
        ("chromium", CHROMIUM),
        ("chromedriver", DRIVER),
        ("selenium", importlib.util.find_spec("selenium")),
        ("textual-serve", importlib.util.find_spec("textual_serve")),
    )
    if not ok
]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)} (.ci/run installs them)")

ANSI = re.compile(r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b[PX^_].*?\x1b\\|\x1b\][^\x07]*\x07|\x1b[@-Z\\-_]")
# keeps the app's output as text in the page (the terminal itself is a canvas)
CAPTURE = """
window.__frames = [];
const Native = window.WebSocket;
window.WebSocket = function (url, protocols) {
  const ws = protocols === undefined ? new Native(url) : new Native(url, protocols);
  ws.addEventListener('message', (e) => {
    if (typeof e.data !== 'string') window.__frames.push(new TextDecoder().decode(e.data));
  });
  return ws;
};
window.WebSocket.prototype = Native.prototype;
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def server(tmp_path: Path):
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    out = tmp_path / "runs"
    command = [sys.executable, "-m", "tuitrain", "serve", "--port", str(port), "--"]
    process = subprocess.Popen(
        [*command, "train", "rings", "--epochs", "100000", "--out", str(out)], stdout=log, stderr=subprocess.STDOUT
    )

    def listening() -> bool:
        assert process.poll() is None, (tmp_path / "serve.log").read_text()
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(listening, "the server")
        yield f"http://127.0.0.1:{port}", out
    finally:
        process.terminate()
        process.wait(30)
        log.close()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,800"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CAPTURE})
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.slow  # a real server process and a headless browser
def test_the_dashboard_in_a_browser_answers_a_key(server, browser) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    url, out = server
    browser.get(url)

    def screen() -> str:
        return ANSI.sub("", "".join(browser.execute_script("return window.__frames")))

    wait_until(lambda: "RUNNING" in screen(), "the dashboard to show RUNNING")
    assert "Charts" in screen() and "Parameters" in screen()
    seen = len(screen())
    browser.find_element("css selector", ".textual-terminal").click()  # focus the terminal
    ActionChains(browser).send_keys(" ").perform()
    wait_until(lambda: "PAUSED" in screen()[seen:], "PAUSED after space")
    # the key reached the app that trains: its run directory says so too
    [run_dir] = list(out.iterdir())
    wait_until(lambda: '"state": "paused"' in (run_dir / "metrics.jsonl").read_text(), "the paused state on disk")


def test_serve_refuses_other_commands_and_warns_off_localhost(tmp_path: Path) -> None:
    done = run_cli("serve", "--", "run", "rings")
    assert done.returncode == 2
    assert done.stderr.startswith("Error: serve runs the app: give nothing") and done.stderr.count("\n") == 1


def test_serving_beyond_localhost_warns_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    said_before_serving: list[str] = []

    def serve(self, debug: bool = False) -> None:  # in this process: what stderr holds when serving would start
        sys.stderr.flush()
        said_before_serving.append(sys.stderr.buffer.getvalue().decode())

    monkeypatch.setattr("textual_serve.server.Server.serve", serve)
    done = run_cli("serve", "--host", "0.0.0.0", "--port", str(port))
    assert done.code == 0, done.err
    [said] = said_before_serving
    first = said.splitlines()[0] if said else ""
    assert first.startswith(f"Warning: serving on 0.0.0.0: anyone who can reach port {port} gets the app")
