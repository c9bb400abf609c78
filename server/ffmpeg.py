"""The one way the server runs ffmpeg (server/video_encode.py, server/video_decode.py, server/output.py):
the binary imageio-ffmpeg ships (so the server needs no system ffmpeg), one subprocess per call,
its exit status and stderr kept, and a hard timeout.

Why ffmpeg is run here rather than through imageio-ffmpeg's `read_frames`/`write_frames` or PyAV
(measured with scripts/bench_video_io.py on a 2-core CPU; see BENCHMARKS.md, "Video I/O"):
- `read_frames` ends quietly when ffmpeg stops at a decode error: a 95%-truncated MP4 gave 12
  of its 16 frames and no error, where we must answer 400 (it never reads ffmpeg's exit
  status), and its frame reads have no deadline. Its metadata probe took 36-48 ms against
  13-14 ms for ours, and decodes a whole frame before the pixel limit could refuse it.
- `write_frames` gives byte-identical MP4s (the same binary and options) but never looks at
  ffmpeg's exit status or keeps its stderr: a failed or killed encode would return a broken
  file. It was no faster (28 against 17 ms for 16 frames of 32x32; 41 against 43 at 128x128).
- PyAV (a 36 MB wheel, 103 MB installed, its own FFmpeg 8.1 beside imageio-ffmpeg's) decodes
  5-6x faster (5 against 28 ms at 32x32, 8 against 40 at 128x128) with the same frames, but its
  libx264 writes other bytes, so a seed would no longer give the same file as before; and it
  decodes untrusted uploads inside the server process, where a stuck decoder cannot be killed.
  The 20-30 ms it saves per input video are small beside a generation's seconds.
So one subprocess per call, with its exit status, its stderr and a hard timeout, stays.
"""
from __future__ import annotations

import re
import subprocess
import tempfile
import threading
from dataclasses import dataclass

from server.errors import VideoError

FFMPEG_TIMEOUT_S = 60.0  # no ffmpeg call may run longer than this; a stuck one is killed


def ffmpeg_exe() -> str:
    import imageio_ffmpeg  # imported late: finding the binary touches the file system

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass
class FFmpegRun:
    returncode: int
    output: bytearray  # stdout, when asked for (else empty)
    stderr: bytes


def run_ffmpeg(cmd: list[str], stdin: bytes | None = None, output: bool = False) -> FFmpegRun:
    """Runs `cmd` (an ffmpeg command line): `stdin` written to its input by a thread of its own
    (so that neither side can wait on the other), its output read into one bytearray as it comes
    when `output` (subprocess.run would hold it twice: its chunks, then their join; a bytearray
    grows in place), else discarded. stderr goes to a temporary file, so no pipe can fill and
    stall ffmpeg. Killed after FFMPEG_TIMEOUT_S: VideoError 400 `invalid_video`."""
    out = bytearray()
    killed = threading.Event()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE if output else subprocess.DEVNULL, stderr=err)

        def kill() -> None:
            if proc.poll() is None:  # still running: not a clean exit that beat timer.cancel()
                killed.set()
                proc.kill()

        def feed() -> None:
            try:
                proc.stdin.write(stdin)
            except (BrokenPipeError, OSError):  # ffmpeg stopped reading (an error, or killed)
                pass
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        timer = threading.Timer(FFMPEG_TIMEOUT_S, kill)
        timer.start()
        writer = threading.Thread(target=feed, daemon=True) if stdin is not None else None
        try:
            if writer is not None:
                writer.start()
            if output:
                while chunk := proc.stdout.read(1 << 20):
                    out += chunk
        finally:
            if output:
                proc.stdout.close()
            returncode = proc.wait()
            if writer is not None:
                writer.join()
            timer.cancel()
        err.seek(0)
        stderr = err.read()
    if killed.is_set() and returncode != 0:  # a process that ended on its own is not a timeout
        raise VideoError(400, "invalid_video", f"ffmpeg took longer than {FFMPEG_TIMEOUT_S:g} s on this file")
    return FFmpegRun(returncode, out, stderr)


# ffmpeg's closing lines only say that a thread stopped; the cause is on an earlier line.
_NOISE = re.compile(
    r"Terminating thread|Task finished|Nothing was written|Could not open encoder|Cannot determine format"
    r"|At least one output file|Consider increasing|Error opening (input|output) file|Error while|Conversion failed"
)
_PREFIX = re.compile(r"^(\[[^\]]*\] ?)+")  # "[h264 @ 0x55...] " and "[in#0/mov,... @ 0x...] [dec:...] "


def first_error(stderr: bytes) -> str:
    """The first line of ffmpeg's log that says what went wrong, without its "[codec @ 0x..]" prefix."""
    for line in stderr.decode("utf-8", "replace").splitlines():
        line = _PREFIX.sub("", line.strip())
        if line and not _NOISE.search(line):
            return line[:300]
    return "ffmpeg gave no reason"
