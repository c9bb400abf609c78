"""Review C3: an edit decodes its source's windows together (one decoder call through the batching
queue, no mask), not one after another through the masking path."""
from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from conftest import video_request
from server.request import Mask, Size
from server.runtime import load_runtime
from server.samplers import SamplerOptions
from server.settings import Settings

REPO = Path(__file__).resolve().parent.parent / "model_repository" / "moving-digits"


@pytest.mark.skipif(not (REPO / "manifest.json").is_file(), reason="no demo model: run `make model`")
def test_an_edit_decodes_its_source_windows_in_one_decoder_call(monkeypatch):
    from server.pipeline import RunLog

    runtime = load_runtime(Settings(model_repository=REPO, max_batch_size=8))
    try:
        pipeline = runtime.pipelines[runtime.catalogue.default_model]
        sampler = SamplerOptions(steps=2)
        source = video_request(task="class_conditional", class_label=2, num_frames=28, size=Size(32, 32), seed=5,
                               sampler=sampler)
        log = RunLog()
        asyncio.run(pipeline.generate(source, None, lambda _: None, log=log))
        assert len(log.tokens) == 2

        batches: list[int] = []
        monkeypatch.setattr(pipeline.decoder, "on_batch", lambda name, rows: batches.append(rows))
        edit = video_request(task="inpainting", num_frames=28, size=Size(32, 32), seed=1, sampler=sampler,
                             mask=Mask.from_dict({"box": [0.25, 0.25, 0.75, 0.75]}), edit_from="video_src")
        out = asyncio.run(pipeline.generate(edit, None, lambda _: None, source_tokens=log.tokens))
        assert out.shape == (28, 32, 32, 3) and out.dtype == np.uint8
        assert batches[0] == 2  # both source windows in the first decoder call
    finally:
        runtime.close()
