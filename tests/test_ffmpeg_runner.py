"""Review R10: server/ffmpeg.py's run_ffmpeg is the one runner (the probe, the decode, the MP4 and
WebM encodes), with one timeout and one "took longer" error. Driven with plain commands here."""
from __future__ import annotations

import pytest

from server import ffmpeg
from server.errors import VideoError


def test_input_and_output_flow_together():
    data = bytes(range(256)) * (40 << 10)  # 10 MiB: far past a pipe's buffer both ways
    run = ffmpeg.run_ffmpeg(["cat"], stdin=data, output=True)
    assert run.returncode == 0 and run.output == data


def test_stderr_and_the_exit_status_are_kept():
    run = ffmpeg.run_ffmpeg(["sh", "-c", "echo oops >&2; exit 3"])
    assert (run.returncode, run.stderr, run.output) == (3, b"oops\n", bytearray())


@pytest.mark.parametrize("output", [False, True])
def test_a_stuck_process_is_killed_and_reported(monkeypatch, output):
    monkeypatch.setattr(ffmpeg, "FFMPEG_TIMEOUT_S", 0.3)
    with pytest.raises(VideoError, match="took longer than 0.3 s") as caught:
        ffmpeg.run_ffmpeg(["sleep", "5"], stdin=b"" if output else None, output=output)
    assert caught.value.status == 400 and caught.value.code == "invalid_video"
