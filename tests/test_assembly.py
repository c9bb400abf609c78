"""server/assembly.py (Review R2): the pure steps the served pipeline and the peers' lockstep decode
share, so the two cannot drift."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import make_api_manifest
from server import assembly as A
from server.conditioning import Window
from server.tasks import TaskError


def test_the_super_resolution_chain_leads_to_the_size_asked_for():
    m = make_api_manifest()  # 32x32, then SR to 64 and 128
    assert A.sr_chain(m, (32, 32)) == []
    assert [A.sr_name(s) for s in A.sr_chain(m, (128, 128))] == ["sr_64x64", "sr_128x128"]
    assert [tuple(s.out_size) for s in A.sr_chain(m, (64, 64))] == [(64, 64)]
    with pytest.raises(TaskError, match="not one of this model's sizes"):
        A.sr_chain(m, (48, 48))


def test_chunks_of_whole_windows_and_back():
    video = np.random.default_rng(0).random((20, 4, 6, 3)).astype(np.float32)
    chunks = A.sr_chunks(video, 16)
    assert [c.shape for c in chunks] == [(3, 16, 4, 6), (3, 16, 4, 6)] and chunks[0].dtype == np.float32
    assert np.array_equal(chunks[1][:, 4:], np.repeat(chunks[1][:, 3:4], 12, axis=1))  # the last frame held
    assert np.array_equal(A.sr_join(chunks, 20), video)  # an identity "stage": the clip again


def test_a_windows_inputs_and_its_frames_in_the_clip():
    given = np.zeros((28, 2, 2), bool)
    given[:4] = True
    out = np.arange(28 * 2 * 2 * 3, dtype=np.float32).reshape(28, 2, 2, 3)
    win = Window(12, 4, 16)  # the second window of 28 frames: 4 overlap frames
    wg, wv = A.window_inputs(given, out, win, 16)
    assert wg.shape == (16, 2, 2) and wg[:4].all() and not wg[4:].any() and np.array_equal(wv, out[12:28])
    wg, _ = A.window_inputs(given, out, win, 16, overlap_given=False)
    assert not wg.any()  # an edit's window: its overlap is not given
    clip = np.zeros_like(out)
    A.place_window(clip, np.ones((16, 2, 2, 3), np.float32), win)
    assert not clip[:16].any() and clip[16:].all()  # the overlap stays as the last window made it
    assert np.array_equal(A.decoder_frames(np.full((3, 2, 1, 1), 2.0)), np.ones((2, 1, 1, 3)))
