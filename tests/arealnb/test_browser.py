"""Real-browser test: JupyterLab from this venv, headless Debian Chromium driven by Playwright, the quickstart
notebook run through the UI, the dashboard's widgets checked as rendered.

Nothing is downloaded: Playwright (PyPI) drives ``/usr/bin/chromium`` (Debian, installed by ``make setup``
where it may) through ``executable_path``. Without Chromium the test skips with how to get it, except under
``CI=true``, where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "rl_01_quickstart.ipynb"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _require_browser() -> str:
    why = None
    path = _chromium()
    if path is None:
        why = "no Chromium binary (Debian: apt-get install chromium; `make setup` does it when run as root)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            why = "the playwright package is missing (`make setup` installs the dev extra)"
    if why:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser test cannot run under CI=true: {why}")
        pytest.skip(why)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


def _descendants(pid: int, names: tuple[str, ...] = ()) -> list[int]:
    import psutil

    out = []
    try:
        for p in psutil.Process(pid).children(recursive=True):
            try:
                if not names or any(n in p.name().lower() for n in names):
                    out.append(p.pid)
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        pass
    return out


def _alive(pids) -> list[int]:
    import psutil

    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.slow
def test_quickstart_dashboard_renders_and_counts_in_chromium(tmp_path):
    chromium = _require_browser()
    from playwright.sync_api import sync_playwright

    work = tmp_path / "lab"
    work.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)          # the UI autosaves: never into the repository
    port, token = _free_port(), os.urandom(12).hex()
    env = {**os.environ, "NB_QUICK": "1", "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws")}
    log = open(tmp_path / "lab.log", "w")
    server = subprocess.Popen([str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser",
                               f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
                               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
                               "--ServerApp.port_retries=0", *(["--allow-root"] if os.geteuid() == 0 else [])],
                              cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    seen: set[int] = set()
    shot = ROOT / "reports" / "rl_01_dashboard.png"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                _get(f"{base}/api/status?token={token}")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("JupyterLab did not start:\n"
                                         + (tmp_path / "lab.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
            seen.update(_descendants(os.getpid(), ("chrom", "node", "playwright")))   # the driver and Chromium
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}")
                page.wait_for_selector(".jp-Notebook .jp-MarkdownCell", timeout=90_000)
                page.get_by_text("| Idle").first.wait_for(timeout=90_000)          # kernel started
                page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                page.locator("li.lm-Menu-item", has_text="Run All Cells").first.click()

                version = page.locator(".arealnb-version").first
                version.wait_for(timeout=180_000)             # engine start + the evaluation before training
                seen.update(_descendants(server.pid))

                def read() -> int:
                    text = version.inner_text().strip()
                    return int(text) if text.isdigit() else -1

                first = -1
                t_end = time.monotonic() + 120
                while first < 1 and time.monotonic() < t_end:
                    first = read()
                    time.sleep(0.5)
                assert first >= 1, "the dashboard's version counter never left 0"
                t_end = time.monotonic() + 60
                later = first
                while later <= first and time.monotonic() < t_end:
                    time.sleep(0.5)
                    later = read()
                assert later > first, f"version counter stuck at {first}"
                # the rest of the dashboard rendered: counters, buttons, the plot image
                for cls in ("capacity", "running", "accepted", "eta", "gen-tok-per-s"):
                    assert page.locator(f".arealnb-{cls}").first.inner_text().strip() not in ("", "–"), cls
                assert page.locator(".arealnb-pause").first.is_visible()
                assert page.locator(".arealnb-stop").first.is_visible()
                page.locator(".arealnb-plots").first.wait_for(timeout=60_000)
                page.wait_for_function("() => { const i = document.querySelector('.arealnb-plots');"
                                       " return i && i.naturalWidth > 100; }", timeout=60_000)
                # the notebook runs to its end (the closing summary's output), then the dashboard's final state
                page.locator(".jp-OutputArea-output", has_text="learner steps, policy version").first.wait_for(
                    timeout=300_000)
                assert page.locator(".arealnb-state").first.inner_text().strip() == "stopped"
                assert read() > later
                dash = page.locator(".arealnb-dashboard").first
                dash.scroll_into_view_if_needed()
                shot.parent.mkdir(exist_ok=True)
                dash.screenshot(path=str(shot))
                seen.update(_descendants(server.pid))
            finally:
                browser.close()
        for k in _get(f"{base}/api/kernels?token={token}"):
            req = urllib.request.Request(f"{base}/api/kernels/{k['id']}?token={token}", method="DELETE")
            urllib.request.urlopen(req, timeout=30).read()
    finally:
        seen.update(_descendants(server.pid))
        try:
            os.killpg(server.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        log.close()
    deadline = time.monotonic() + 20
    while _alive(seen) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _alive(seen), f"stray processes after shutdown: {_alive(seen)}"
    assert shot.is_file() and shot.stat().st_size > 10_000
