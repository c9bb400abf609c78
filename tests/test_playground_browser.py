"""The playground page (server/static/, served at /) in headless Chromium: it loads the models
through the JavaScript SDK, generates a class-conditional video through the form, and plays the
MP4 in its <video> element (Debian's Chromium decodes H.264). Saves artifacts/playground.png.

Skips only where no Chromium exists (KINETOSCOPE_CHROMIUM, default /usr/bin/chromium)."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("KINETOSCOPE_CHROMIUM", "/usr/bin/chromium"))
PYTHON = os.environ.get("KINETOSCOPE_PYTHON", sys.executable)  # the interpreter that runs the server
MODEL_REPOSITORY = Path(os.environ.get("KINETOSCOPE_TEST_MODEL_REPOSITORY", REPO_ROOT / "model_repository"))
ARTIFACTS = REPO_ROOT / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
READY_TIMEOUT_S = 120
GENERATE_TIMEOUT_MS = 120_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_url():
    """A live server (`kinetoscope serve`, as `python -m cli serve`) on a free port, with the demo model repository."""
    port = _free_port()
    log = (ARTIFACTS / "playground-server.log")
    ARTIFACTS.mkdir(exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PYTHON, "-m", "cli", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--model-repository", str(MODEL_REPOSITORY)],
            cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited ({proc.returncode}) before it was ready:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server was not ready after {READY_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def chromium_page(height: int):
    """A page of a headless Chromium, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1100, "height": height})
        finally:
            browser.close()


def test_playground_generates_and_plays_a_video(server_url):
    with chromium_page(820) as page:
        page_errors: list[str] = []
        console_errors: list[str] = []
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)

        page.goto(f"{server_url}/")
        # The SDK has loaded the models into the form.
        page.wait_for_function("document.querySelectorAll('#model option').length > 0", timeout=30_000)
        assert "Ready" in page.text_content("#status")
        h264 = page.evaluate("document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.42E01E\"')")
        assert h264 in ("probably", "maybe"), f"this Chromium cannot play H.264 MP4 (canPlayType: {h264!r})"

        page.select_option("#task", "class_conditional")
        page.select_option("#class-label", "3")
        page.select_option("#size", "32x32")
        page.fill("#seed", "7")
        # The sampler fields start from what the model recommends for the task.
        with urllib.request.urlopen(f"{server_url}/v1/models", timeout=10) as response:
            card = json.loads(response.read())["data"][0]
        recommended = card["sampler_defaults"]["class_conditional"]
        settings = recommended["methods"][recommended["method"]]
        assert page.input_value("#sampler") == recommended["method"]
        assert recommended["method"] in page.text_content("#sampler-note")
        assert float(page.input_value("#temperature")) == settings["temperature"]
        assert float(page.input_value("#guidance")) == settings["guidance_scale"]
        page.click("#generate")

        # The result plays: the element has decoded data and knows the clip's duration.
        page.wait_for_function(
            "() => { const v = document.getElementById('result');"
            " return v.readyState >= 2 && v.duration > 0 && v.videoWidth > 0; }",
            timeout=GENERATE_TIMEOUT_MS)
        video = page.evaluate(
            "() => { const v = document.getElementById('result');"
            " return {readyState: v.readyState, duration: v.duration, width: v.videoWidth, height: v.videoHeight,"
            " src: v.currentSrc, error: v.error && v.error.message}; }")
        assert video["error"] is None
        assert (video["width"], video["height"]) == (32, 32)
        assert video["src"].startswith("blob:")
        assert "Completed" in page.text_content("#status")

        job = json.loads(page.text_content("#job-json"))
        assert job["status"] == "completed"
        assert job["task"] == "class_conditional"
        assert job["seed"] == 7
        assert job["request"]["class_label"] == 3
        assert job["request"]["sampler"] == settings
        download = page.locator("#download")
        assert download.is_visible()
        assert download.get_attribute("href").startswith("blob:")
        assert download.get_attribute("download") == f"{job['id']}.mp4"

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)
        assert not page_errors, page_errors
        assert not console_errors, console_errors


def test_api_docs_render_with_no_network(server_url):
    """/docs (Swagger UI) and /redoc render in Chromium with every request off this server refused."""
    with chromium_page(900) as page:
        outside: list[str] = []

        def only_local(route):
            if route.request.url.startswith(server_url):
                route.continue_()
            else:
                if route.request.resource_type != "image":  # ReDoc's footer logo is cosmetic
                    outside.append(route.request.url)
                route.abort()

        page.route("**/*", only_local)
        page.goto(f"{server_url}/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        assert "Kinetoscope" in page.text_content(".swagger-ui .info .title")
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)
        paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.textContent)")
        assert any("/v1/videos" in p for p in paths), paths
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "docs.png"))
        page.goto(f"{server_url}/redoc")
        page.wait_for_selector("h1", timeout=30_000)
        assert "Kinetoscope" in page.text_content("h1")
        page.screenshot(path=str(ARTIFACTS / "redoc.png"))
        assert outside == [], outside
