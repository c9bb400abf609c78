"""The playground page (server/static/, served at /) in headless Chromium: it loads the models
through the JavaScript SDK, generates a class-conditional video through the form, and plays the
MP4 in its <video> element (Debian's Chromium decodes H.264); shows a MaskGIT job forming from its
previews, draws the confidence overlay, and edits a dragged region. Saves artifacts/playground*.png.

Skips only where no Chromium exists (KINETOSCOPE_CHROMIUM, default /usr/bin/chromium)."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from live_server import free_port, stop_process

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


@pytest.fixture(scope="module")
def server_url():
    """A live server (`kinetoscope serve`, as `python -m cli serve`) on a free port, with the demo model repository."""
    port = free_port()
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
        stop_process(proc)


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


def collect_errors(page) -> tuple[list[str], list[str]]:
    """Lists that fill with the page's uncaught exceptions and console errors (both must stay empty)."""
    page_errors: list[str] = []
    console_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
    return page_errors, console_errors


def open_playground(page, server_url: str) -> None:
    """The playground, once the SDK has loaded the models into the form."""
    page.goto(f"{server_url}/")
    page.wait_for_function("document.querySelectorAll('#model option').length > 0", timeout=30_000)


def ask_class_conditional(page, label: str, seed: str) -> None:
    """The form set to a 32x32 class-conditional clip of `label` with `seed`."""
    page.select_option("#task", "class_conditional")
    page.select_option("#class-label", label)
    page.select_option("#size", "32x32")
    page.fill("#seed", seed)


def test_playground_generates_and_plays_a_video(server_url):
    with chromium_page(820) as page:
        page_errors, console_errors = collect_errors(page)

        open_playground(page, server_url)
        assert "Ready" in page.text_content("#status")
        h264 = page.evaluate("document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.42E01E\"')")
        assert h264 in ("probably", "maybe"), f"this Chromium cannot play H.264 MP4 (canPlayType: {h264!r})"

        ask_class_conditional(page, "3", "7")
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


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _video_plays(page) -> None:
    """Waits until the result element has decoded data and its clock moves (it is playing)."""
    page.wait_for_function(
        "() => { const v = document.getElementById('result');"
        " return !v.hidden && v.readyState >= 2 && v.videoWidth > 0 && !v.paused && v.currentTime > 0; }",
        timeout=GENERATE_TIMEOUT_MS)


def _drag(page, selector: str, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A mouse drag over an element, between two points given relative to it (may lie outside)."""
    box = page.locator(selector).bounding_box()
    at = lambda p: (box["x"] + p[0] * box["width"], box["y"] + p[1] * box["height"])  # noqa: E731
    page.mouse.move(*at(start))
    page.mouse.down()
    page.mouse.move(*at(end), steps=8)
    page.mouse.up()


def test_playground_shows_the_video_forming_then_edits_a_region(server_url):
    """Previews (MaskGIT, 24 steps): the page draws at least 6 distinct guesses before the video
    arrives, then plays it; the confidence overlay draws the token map; a box dragged over the
    result makes an edit job whose tokens outside the box are the source's, exactly. Saves
    artifacts/playground-forming-*.png, -confidence.png, -edit-drag.png and -edited.png."""
    from server import tasks as T

    with chromium_page(900) as page:
        page_errors, console_errors = collect_errors(page)
        open_playground(page, server_url)
        ask_class_conditional(page, "5", "3")
        page.select_option("#sampler", "maskgit")  # a preview per step
        page.fill("#steps", "24")
        assert page.is_enabled("#previews") and page.is_checked("#previews")
        # Record every preview image the page shows, and whether the video had a source by then.
        page.evaluate("""() => {
            window.seenPreviews = [];
            const strip = document.getElementById('preview-strip'), video = document.getElementById('result');
            new MutationObserver(() => window.seenPreviews.push({src: strip.src, video: video.getAttribute('src')}))
                .observe(strip, {attributes: true, attributeFilter: ['src']});
        }""")
        page.click("#generate")

        # Screenshots of the clip forming, one per new step the page shows (as many as the pace allows).
        shots, caption = 0, ""
        deadline = time.monotonic() + GENERATE_TIMEOUT_MS / 1000
        while time.monotonic() < deadline and shots < 8:
            done = page.evaluate("() => !!document.getElementById('result').getAttribute('src')")
            if done:
                break
            now = page.text_content("#preview-caption") or ""
            if now and now != caption:
                caption = now
                shots += 1
                page.screenshot(path=str(ARTIFACTS / f"playground-forming-{shots}.png"), full_page=True)
            page.wait_for_timeout(30)
        _video_plays(page)
        source = json.loads(page.text_content("#job-json"))
        assert source["status"] == "completed" and source["request"]["previews"] is True
        assert source["request"]["sampler"]["method"] == "maskgit" and source["request"]["sampler"]["steps"] == 24

        seen = page.evaluate("window.seenPreviews")
        before = {s["src"] for s in seen if not s["video"]}
        assert len(before) >= 6, f"{len(before)} distinct previews before the video (of {len(seen)} shown)"
        assert all(src.startswith("data:image/png;base64,") for src in before)
        assert "Step 24 of 24 · 100% decided" in page.text_content("#preview-caption")
        assert page.is_hidden("#forming") and page.is_visible("#result")

        # The confidence overlay: the final map of the job, one cell per token of the frame on show.
        assert page.is_enabled("#show-confidence")
        page.check("#show-confidence")
        page.wait_for_selector("#heat", state="visible")
        grid = _get_json(f"{server_url}/v1/videos/{source['id']}/content?variant=confidence")["token_grid"]
        assert page.evaluate("() => { const c = document.getElementById('heat'); return [c.width, c.height]; }") == [grid[2], grid[1]]
        page.screenshot(path=str(ARTIFACTS / "playground-confidence.png"), full_page=True)

        # Edit a region: drag a box over the right part of the result (past the edge: clamped to it).
        page.click("#edit-region")
        assert page.get_attribute("#edit-region", "aria-pressed") == "true"
        _drag(page, "#stage", (0.45, 0.2), (1.1, 0.75))
        page.wait_for_function(
            "id => { try { return JSON.parse(document.getElementById('job-json').textContent).request.edit_from === id; }"
            " catch { return false; } }", arg=source["id"], timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "playground-edit-drag.png"), full_page=True)
        page.wait_for_function(
            "id => { const j = JSON.parse(document.getElementById('job-json').textContent);"
            " return j.request.edit_from === id && j.status === 'completed'"
            " && document.getElementById('status').textContent.startsWith('Completed'); }",
            arg=source["id"], timeout=GENERATE_TIMEOUT_MS)
        _video_plays(page)
        page.screenshot(path=str(ARTIFACTS / "playground-edited.png"), full_page=True)
        edit = json.loads(page.text_content("#job-json"))
        assert edit["task"] == "inpainting" and edit["request"]["previews"] is True
        x0, y0, x1, y1 = edit["request"]["mask"]["box"]
        assert x0 == pytest.approx(0.45, abs=0.02) and y0 == pytest.approx(0.2, abs=0.02)
        assert (x1, y1) == (1.0, pytest.approx(0.75, abs=0.02))
        assert not page_errors, page_errors
        assert not console_errors, console_errors

    # Every token wholly outside the box is the source's; the region was generated again.
    import numpy as np

    docs = [_get_json(f"{server_url}/v1/videos/{job['id']}/content?variant=tokens") for job in (source, edit)]
    t, h, w = docs[0]["token_grid"]
    before_tokens, after_tokens = (np.asarray(d["windows"][0]).reshape(t, h, w) for d in docs)
    frames, (width, height) = edit["num_frames"], map(int, edit["size"].split("x"))
    given = T.pixel_mask("inpainting", frames, height, width, box=[x0, y0, x1, y1])
    kept = T.token_states(given, frames // t, height // h) == T.STATE_FULL
    assert kept.any() and (~kept).any()
    assert np.array_equal(after_tokens[kept], before_tokens[kept])
    assert (after_tokens[~kept] != before_tokens[~kept]).any()


def test_playground_previews_any_sampler_and_edits_an_extended_clip(server_url):
    """Review A4/A5: the page asks for previews of an autoregressive job too (the server serves
    them), and a clip of several windows gets its confidence overlay (the window that made the
    frame on show) and can be edited."""
    with chromium_page(900) as page:
        page_errors, console_errors = collect_errors(page)
        open_playground(page, server_url)
        ask_class_conditional(page, "2", "4")
        page.select_option("#sampler", "autoregressive")
        assert page.is_enabled("#previews") and page.is_checked("#previews")
        page.click("#generate")
        _video_plays(page)
        ar = json.loads(page.text_content("#job-json"))
        assert ar["request"]["sampler"]["method"] == "autoregressive" and ar["request"]["previews"] is True
        assert page.is_visible("#history") and page.get_attribute("#preview-strip", "src").startswith("data:image/png")

        # Two windows (16 frames, 4 given): frames 0..15 are the first's, 16..27 the second's.
        page.select_option("#sampler", "maskgit")
        page.fill("#steps", "4")
        page.fill("#num-frames", "28")
        page.click("#generate")
        page.wait_for_function(
            "() => JSON.parse(document.getElementById('job-json').textContent).num_frames === 28"
            " && document.getElementById('status').textContent.startsWith('Completed')", timeout=GENERATE_TIMEOUT_MS)
        _video_plays(page)
        source = json.loads(page.text_content("#job-json"))
        assert page.is_enabled("#show-confidence") and page.is_enabled("#edit-region")
        page.check("#show-confidence")
        page.wait_for_selector("#heat", state="visible")
        doc = _get_json(f"{server_url}/v1/videos/{source['id']}/content?variant=confidence")
        t, h, w = doc["token_grid"]
        assert len(doc["windows"]) == 2
        for frame, window, start in ((5, 0, 0), (20, 1, 12)):
            page.evaluate("s => new Promise((done) => { const v = document.getElementById('result'); v.pause();"
                          " v.addEventListener('seeked', () => done(), {once: true}); v.currentTime = s; })",
                          (frame + 0.5) / source["fps"])
            page.wait_for_timeout(100)  # the overlay follows the video on the next animation frames
            alpha = page.evaluate("() => { const c = document.getElementById('heat');"
                                  " return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"
                                  ".filter((_, i) => i % 4 === 3); }")
            latent = (frame - start) * t // 16
            values = doc["windows"][window][latent * h * w:(latent + 1) * h * w]
            assert alpha == [round(20 + 180 * (1 - v / 255)) for v in values], (frame, window)

        page.click("#edit-region")
        _drag(page, "#stage", (0.1, 0.1), (0.6, 0.6))
        page.wait_for_function(
            "id => { const j = JSON.parse(document.getElementById('job-json').textContent);"
            " return j.request.edit_from === id && j.status === 'completed'"
            " && document.getElementById('status').textContent.startsWith('Completed'); }",
            arg=source["id"], timeout=GENERATE_TIMEOUT_MS)
        edit = json.loads(page.text_content("#job-json"))
        assert edit["num_frames"] == 28 and edit["task"] == "inpainting"
        assert not page_errors, page_errors
        assert not console_errors, console_errors
