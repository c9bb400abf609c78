"""Video I/O: server/video.py against imageio-ffmpeg's frame generators and PyAV.

    .venv/bin/python scripts/bench_video_io.py            # PyAV rows only where `import av` works
    PYTHONPATH=/tmp/avlib .venv/bin/python scripts/bench_video_io.py   # PyAV from a side directory

For a 16-frame 32x32 and 128x128 clip it prints the median encode and decode time of each way,
whether each way's MP4 has the same bytes as encode_mp4's (the same-seed guarantee of the CLI),
whether its decoded frames equal decode_video's, and whether it refuses a truncated MP4.
Timings are medians of 7 runs after one warm-up. The encoders use the same settings as
encode_mp4 (x264 CRF 12, preset fast, BT.709 yuv420p, +faststart).
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from server import video  # noqa: E402

LIMITS = dict(max_bytes=64 << 20, max_frames=256, max_pixels=1 << 20)
_X264_ARGS = [
    "-vf", "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p",
    "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709", "-color_range", "tv",
    "-preset", video.MP4_PRESET, "-crf", str(video.MP4_CRF), "-movflags", "+faststart",
]


def clip(size: int) -> np.ndarray:
    t, y, x = np.meshgrid(np.arange(16), np.arange(size), np.arange(size), indexing="ij")
    rgb = (255 * x / (size - 1), 255 * y / (size - 1), 128 + 100 * np.sin(2 * np.pi * (x + y) / (2 * size) + t / 3))
    return np.stack(rgb, axis=-1).round().clip(0, 255).astype(np.uint8)


def median_s(fn, runs: int = 7) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- imageio-ffmpeg's generators ------------------------------------------------------------------

def iio_encode(frames: np.ndarray, fps: int) -> bytes:
    import imageio_ffmpeg

    t, h, w, _ = frames.shape
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.mp4")
        writer = imageio_ffmpeg.write_frames(path, (w, h), fps=fps, codec="libx264", quality=None, macro_block_size=1,
                                             ffmpeg_log_level="error", ffmpeg_timeout=60, output_params=_X264_ARGS)
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        with open(path, "rb") as f:
            return f.read()


def iio_decode(data: bytes) -> np.ndarray:
    import imageio_ffmpeg

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "in.mp4")
        with open(path, "wb") as f:
            f.write(data)
        reader = imageio_ffmpeg.read_frames(path, input_params=["-xerror"], output_params=["-map", "0:v:0"])
        w, h = next(reader)["size"]
        frames = [np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in reader]
    return np.stack(frames)


# --- PyAV -----------------------------------------------------------------------------------------

def av_encode(frames: np.ndarray, fps: int) -> bytes:
    import av

    t, h, w, _ = frames.shape
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.mp4")
        with av.open(path, "w", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream("libx264", rate=fps, options={"crf": str(video.MP4_CRF), "preset": video.MP4_PRESET})
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.codec_context.color_primaries = stream.codec_context.color_trc = 1  # BT.709
            stream.codec_context.colorspace = 1
            for frame in frames:
                rgb = av.VideoFrame.from_ndarray(frame, format="rgb24")
                out.mux(stream.encode(rgb.reformat(format="yuv420p", dst_colorspace="itu709", dst_color_range="MPEG")))
            out.mux(stream.encode(None))
        with open(path, "rb") as f:
            return f.read()


def av_decode(data: bytes) -> np.ndarray:
    import io

    import av

    with av.open(io.BytesIO(data)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def refuses_truncated(decode, data: bytes) -> bool:
    try:
        frames = decode(data[: int(len(data) * 0.95)])
    except Exception:  # noqa: BLE001 - any refusal counts
        return True
    return len(frames) == 0


def main() -> None:
    ways = {"server/video.py": (lambda f: video.encode_mp4(f, 8), lambda d: video.decode_video(d, **LIMITS).frames),
            "imageio-ffmpeg read/write_frames": (lambda f: iio_encode(f, 8), iio_decode)}
    try:
        import av

        ways[f"PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info})"] = (lambda f: av_encode(f, 8), av_decode)
    except ImportError:
        print("PyAV not importable: its rows are skipped")
    print("| way | clip | encode ms | decode ms | same MP4 bytes | same decoded frames | refuses a truncated MP4 |")
    print("| --- | --- | ---: | ---: | --- | --- | --- |")
    for size in (32, 128):
        frames = clip(size)
        reference = video.encode_mp4(frames, 8)
        ref_frames = video.decode_video(reference, **LIMITS).frames
        for name, (encode, decode) in ways.items():
            enc_ms = 1000 * median_s(lambda: encode(frames))
            dec_ms = 1000 * median_s(lambda: decode(reference))
            same_bytes = encode(frames) == reference
            same_frames = np.array_equal(decode(reference), ref_frames)
            print(f"| {name} | 16x{size}x{size} | {enc_ms:.1f} | {dec_ms:.1f} | {same_bytes} | {same_frames} "
                  f"| {refuses_truncated(decode, reference)} |")


if __name__ == "__main__":
    main()
