"""Latency of /v1/tokenize, /v1/detokenize and /v1/score against a running server (BENCHMARKS.md):
    .venv/bin/python scripts/bench_tokens.py http://127.0.0.1:8000
"""
import base64, statistics, time, httpx, sys
from models.data.moving_digits import MovingDigits
from server.video import encode_mp4
url = sys.argv[1]
clips, _ = MovingDigits("test", seed=5).batch(0, 20)
vids = [base64.b64encode(encode_mp4(c, 8)).decode() for c in clips]
with httpx.Client(base_url=url, timeout=60) as c:
    def timed(fn):
        out = []
        for v in vids:
            t = time.perf_counter(); r = fn(v); out.append(time.perf_counter() - t); assert r.status_code == 200, r.text
        return statistics.median(out) * 1000
    toks = [c.post("/v1/tokenize", json={"input_video": v}).json()["tokens"] for v in vids[:1]]
    print("tokenize ms", round(timed(lambda v: c.post("/v1/tokenize", json={"input_video": v})), 1))
    print("detokenize 32x32 ms", round(timed(lambda v: c.post("/v1/detokenize", json={"tokens": toks[0]})), 1))
    print("detokenize 128x128 ms", round(timed(lambda v: c.post("/v1/detokenize", json={"tokens": toks[0], "size": "128x128"})), 1))
    print("score (video) ms", round(timed(lambda v: c.post("/v1/score", json={"input_video": v})), 1))
    print("score (tokens) ms", round(timed(lambda v: c.post("/v1/score", json={"tokens": toks[0]})), 1))
