"""The side-by-side peers (cli/bench/peers/): the lockstep decode makes Kinetoscope's videos, each
peer answers a real request with a decodable MP4 and its timing headers, the LitServe peer
really batches, and `kinetoscope bench --target ...` reports the same fields for every target.
No timing is asserted."""
from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import httpx
import numpy as np
import pytest

from cli.bench import run_bench
from cli.bench.peers.common import (BATCH_ID_HEADER, BATCH_SIZE_HEADER, COMPUTE_HEADER, QUEUE_HEADER, VIDEOS_PATH,
                                    PeerModel)
from cli.bench.peers.launch import serve_target
from cli.bench.peers.side_by_side import measure_target, side_by_side_table
from server.video import decode_video, encode_mp4

REPO = Path(__file__).resolve().parents[1] / "model_repository"
LITSERVE_MISSING = "litserve is not installed (pip install -e '.[peers]'): the LitServe peer cannot run"

pytestmark = pytest.mark.skipif(not (REPO / "moving-digits" / "manifest.json").is_file(),
                                reason="no model repository: run `make model`")


def body(seed: int, steps: int = 2, label: int = 3) -> dict:
    return {"task": "class_conditional", "class_label": label, "seed": seed,
            "sampler": {"method": "maskgit", "steps": steps}}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


def frames_of(mp4: bytes) -> np.ndarray:
    return decode_video(mp4, max_bytes=1 << 26, max_frames=1024, max_pixels=1 << 22).frames


@pytest.fixture(scope="module")
def peer() -> PeerModel:
    return PeerModel(REPO)


@pytest.fixture(scope="module")
def litserve_url():
    pytest.importorskip("litserve", reason=LITSERVE_MISSING)
    # Batches of up to 2 gathered for up to 1 s: two requests sent together share one predict call.
    with serve_target("litserve", REPO, max_batch_size=2, batch_timeout=1.0) as url:
        yield url


@pytest.fixture(scope="module")
def fastapi_url():
    with serve_target("fastapi", REPO) as url:
        yield url


# --- the lockstep decode against the served pipeline --------------------------------------------------

def _lockstep_cases(peer):
    """A MaskGIT class-conditional request (guided: two rows a call) and an inpainting one of
    another step count, prepared."""
    first = peer.generate([peer.prepare(body(7, steps=3))])[0]
    inpaint = {"task": "inpainting", "seed": 2, "mask": "center", "sampler": {"steps": 2},
               "input_video": base64.b64encode(encode_mp4(first, 8)).decode()}
    return [peer.prepare(body(7, steps=3)), peer.prepare(inpaint)]


def test_lockstep_decode_makes_kinetoscopes_videos(peer):
    """Same seeds, same videos, byte for byte: each request alone through the lockstep decode and
    alone through the served pipeline (one at a time: both make the same network calls with the
    same rows, so nothing here depends on how an engine batches; Review A12)."""
    from server.runtime import load_runtime

    prepared = _lockstep_cases(peer)
    alone = [peer.generate([p])[0] for p in prepared]
    runtime = load_runtime(peer.settings)
    try:
        pipeline = runtime.pipelines[peer.manifest.model_id]
        expected = [asyncio.run(pipeline.generate(p.request, p.frames)) for p in prepared]
    finally:
        runtime.close()
    assert all(np.array_equal(a, b) for a, b in zip(alone, expected))


def _rows_are_batch_invariant(peer) -> bool:
    """Whether the prior and the decoder give a row the same bits alone and among other rows
    (ONNX Runtime on this CPU: so far yes; not promised, and a GPU's kernels often differ)."""
    m, rng = peer.manifest, np.random.default_rng(0)
    n, t, h, w = m.num_tokens, *m.token_grid
    prior = {"tokens": rng.integers(0, m.vocab_size + 1, (3, n)), "cond": rng.integers(0, m.vocab_size + 1, (3, n)),
             "state": rng.integers(0, 3, (3, n)), "class_id": np.array([1, 10, 4])}
    decoder = {"tokens": rng.integers(0, m.vocab_size, (3, t, h, w))}
    for name, feeds in (("prior", prior), ("decoder", decoder)):
        feeds = {k: v.astype(np.int64) for k, v in feeds.items()}
        together = next(iter(peer.model.engines[name].run(feeds).values()))
        alone = next(iter(peer.model.engines[name].run({k: v[:1] for k, v in feeds.items()}).values()))
        if not np.array_equal(together[:1], alone):
            return False
    return True


def test_lockstep_batched_requests_get_the_videos_they_get_alone(peer):
    """The two requests decoded together (rows of both in each call, one finishing first) make
    exactly the videos each makes alone, where the engines are batch-invariant (measured first;
    elsewhere batching may move a row's last bits and so its sampled tokens: not a lockstep bug)."""
    if not _rows_are_batch_invariant(peer):
        pytest.skip("this engine's results depend on the batch's other rows: exact equality is not expected")
    prepared = _lockstep_cases(peer)
    batched = peer.generate(prepared)
    assert all(np.array_equal(a, peer.generate([p])[0]) for a, p in zip(batched, prepared))


def test_lockstep_rounds_drop_finished_requests(peer):
    """A 2-step and a 4-step request: 4 prior calls, not 6; one decoder call for both."""
    peer.model.calls.clear()
    peer.generate([peer.prepare(body(1, steps=2)), peer.prepare(body(2, steps=4))])
    assert peer.model.calls["prior"] == 4 and peer.model.calls["decoder"] == 1


# --- the peers over HTTP --------------------------------------------------------------------------

def check_video_response(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    assert float(response.headers[QUEUE_HEADER]) >= 0 and float(response.headers[COMPUTE_HEADER]) > 0
    frames = frames_of(response.content)
    assert frames.shape == (16, 32, 32, 3)
    return frames


def test_fastapi_peer_answers_with_an_mp4(fastapi_url, peer):
    response = httpx.post(fastapi_url + VIDEOS_PATH, json=body(11), timeout=120)
    check_video_response(response)
    assert response.headers[BATCH_SIZE_HEADER] == "1"
    # The same seed in-process gives the same video: its frames, decoded, within the MP4's loss of
    # the peer's own (36 dB here; another seed's video is 17-19 dB off). Not the MP4 bytes: those
    # of two processes' x264 runs need not be equal (Review A12).
    prepared = peer.prepare(body(11))
    video = peer.generate([prepared])[0]
    assert _psnr(frames_of(response.content), video) > 30
    refused = httpx.post(fastapi_url + VIDEOS_PATH, json={"task": "inpainting", "seed": 1}, timeout=30)
    assert refused.status_code == 422 and refused.json()["error"]["param"] == "input_video"


def test_litserve_peer_answers_with_an_mp4_and_batches(litserve_url):
    async def pair(seed: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(*(client.post(litserve_url + VIDEOS_PATH, json=body(seed + i)) for i in range(2)))

    # Two requests sent together land in one predict call (the same batch id, batch size 2). A pair
    # can straddle the end of one of LitServe's 1 s gathering windows, so up to three pairs are sent.
    for attempt in range(3):
        responses = asyncio.run(pair(20 + 2 * attempt))
        for r in responses:
            check_video_response(r)
        ids = {r.headers[BATCH_ID_HEADER] for r in responses}
        if len(ids) == 1 and all(r.headers[BATCH_SIZE_HEADER] == "2" for r in responses):
            break
    else:
        pytest.fail(f"no pair shared a predict call: {[dict(r.headers) for r in responses]}")
    # A bad request in a batch is answered alone, in the API's error shape; its partner gets its video.
    async def mixed() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(client.post(litserve_url + VIDEOS_PATH, json={"task": "class_conditional"}),
                                        client.post(litserve_url + VIDEOS_PATH, json=body(5)))

    bad, good = asyncio.run(mixed())
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "missing_field"
    check_video_response(good)


# --- the load driver ---------------------------------------------------------------------------------

REPORT_FIELDS = {"config", "requests", "completed", "errors", "error_counts", "wall_s", "videos_per_second",
                 "latency_s", "mean_queue_s", "mean_compute_s", "per_task", "mean_batch_size", "records"}


def check_report(report: dict, target: str) -> None:
    assert REPORT_FIELDS <= set(report)
    assert report["config"]["target"] == target and report["config"]["steps"] == [2, 3]
    assert report["completed"] == report["requests"] == 3, report["error_counts"]
    assert report["mean_queue_s"] is not None and report["mean_compute_s"] is not None
    assert set(report["per_task"]) <= {"class_conditional", "inpainting"}
    assert all(r["steps"] in (2, 3) and r["content_bytes"] > 0 for r in report["records"])
    assert report["mean_batch_size"]
    # The roofline: the FLOPs of what ran (class-conditional or inpainting, 2 or 3 MaskGIT steps,
    # class-conditional with the model's recommended guidance: two rows) from the served model's
    # graphs, against this run's wall time and the measured peak.
    from cli.bench.roofline import graph_flops
    flops = {name: graph_flops(REPO / "moving-digits" / f"{name}.onnx", {"batch": 1})[0] / 1e9
             for name in ("prior", "decoder", "encoder")}
    roof = report["roofline"]
    assert 2 * flops["prior"] + flops["decoder"] <= roof["gflop_per_clip"] <= 6 * flops["prior"] + flops["decoder"] + flops["encoder"]
    assert roof["achieved_gflop_per_s"] == pytest.approx(roof["gflop_per_clip"] * report["completed"] / report["wall_s"])
    assert 0 < roof["share_of_peak"] == pytest.approx(roof["achieved_gflop_per_s"] / roof["peak_gflop_per_s"])
    assert roof["ceiling_videos_per_second"] == pytest.approx(roof["peak_gflop_per_s"] / roof["gflop_per_clip"])


@pytest.mark.parametrize("target", ["kinetoscope", "fastapi", "litserve"])
def test_bench_reports_every_target(target, request):
    """The same load (tasks, seeds, steps, an input video made by the target) on each target."""
    if target == "kinetoscope":
        context = serve_target("kinetoscope", REPO)
        url = context.__enter__()
        request.addfinalizer(lambda: context.__exit__(None, None, None))
    else:
        url = request.getfixturevalue(f"{target}_url")
    report = asyncio.run(run_bench(url, target=target, mode="closed", concurrency=2, num_requests=3, seed=3,
                                   task_mix={"class_conditional": 0.5, "inpainting": 0.5}, steps=[2, 3],
                                   roofline=True, model_repository=REPO))
    check_report(report, target)
    if target != "kinetoscope":
        assert set(report["mean_batch_size"]) == {"predict"}


def test_side_by_side_measures_and_tabulates(tmp_path):
    """measure_target's flow (closed loops, the peak, open loop at a share of it) and the table, on
    the FastAPI peer with tiny loads."""
    from cli.bench.peers.side_by_side import make_input_video

    video = make_input_video(REPO, tmp_path / "input.mp4")
    measured = measure_target("fastapi", REPO, duration_s=0.5, input_video=video, steps=[2], concurrencies=(1, 2),
                              fractions=(0.5,), warmup_requests=1, progress=lambda line: None)
    assert set(measured["closed"]) == {1, 2} and measured["peak"] > 0
    assert measured["open"][0.5]["config"]["rate"] == pytest.approx(0.5 * measured["peak"])
    table = side_by_side_table({"duration_s": 0.5, "task_mix": {"class_conditional": 1.0}, "steps": [2],
                                "targets": {"fastapi": measured}})
    assert table.count("| fastapi |") == 3 and "open 50% of peak" in table


def test_fastapi_peer_answers_a_body_that_is_not_json_with_a_400():
    """Review A9: `await request.json()` raised inside the catch-all, and became a 500."""
    from fastapi.testclient import TestClient

    from cli.bench.peers.fastapi_peer import make_app

    with TestClient(make_app(REPO, threads=1)) as client:
        for raw in (b"{not json", b"\xff\xfe"):
            r = client.post(VIDEOS_PATH, content=raw, headers={"content-type": "application/json"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text


def test_the_peers_refuse_previews_and_edits_in_one_place(peer):
    """Review C6: PeerModel.prepare answers them with a 422 naming the field (the lockstep decode
    refused them a second time)."""
    from server.api.errors import APIError

    for field, value in (("previews", True), ("edit", {"from": "video_1"})):
        with pytest.raises(APIError) as caught:
            peer.prepare({**body(1), field: value})
        assert (caught.value.status, caught.value.code, caught.value.param) == (422, "unsupported", field)
