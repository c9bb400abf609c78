"""Review C7, the load tester's small bits: the LitServe peer's predict pairs each prepared
request with its video by order (it keyed them by id()), and a request's MaskGIT step count is
drawn once. Runs without litserve installed (VideoAPI is then a plain class)."""
from __future__ import annotations

import numpy as np

from cli.bench.peers.common import Prepared
from cli.bench.peers.litserve_peer import Decoded, VideoAPI


class FakePeer:
    def generate(self, batch):
        return [np.full((1, 2, 2, 3), p.request, np.uint8) for p in batch]  # a video naming its request


def test_predict_gives_each_request_its_own_video_and_each_refusal_its_error():
    api = VideoAPI.__new__(VideoAPI)
    api.peer, api.batches = FakePeer(), 0
    refused = ValueError("bad body")
    batch = [Decoded(Prepared(7, None), 1.0), Decoded(refused, 2.0), Decoded(Prepared(9, None), 3.0)]
    outputs = api.predict(batch)
    assert [o.video[0, 0, 0, 0] if o.video is not None else None for o in outputs] == [7, None, 9]
    assert [o.error for o in outputs] == [None, refused, None]
    assert [o.started_at for o in outputs] == [1.0, 2.0, 3.0] and {o.batch_size for o in outputs} == {3}


def test_a_requests_step_count_is_drawn_once(monkeypatch):
    """Review C7: steps_for built a fresh RNG at every call (the body, the record, the roofline)."""
    from cli.bench import client as bench_client

    session = bench_client._Session(None, None, size=None, num_frames=None, seed=3, wait="poll", prefer_wait_s=1.0,
                                    request_timeout_s=1.0, steps=[2, 4, 8])
    made = []
    real = np.random.default_rng
    monkeypatch.setattr(bench_client.np.random, "default_rng", lambda seed: made.append(seed) or real(seed))
    first = [session.steps_for(i) for i in range(5)]
    assert [session.steps_for(i) for i in range(5)] == first and session.body("class_conditional", 2)["sampler"]["steps"] == first[2]
    assert len(made) == 5  # one generator per request
    assert all(s in (2, 4, 8) for s in first)
