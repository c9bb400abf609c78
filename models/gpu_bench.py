"""Network throughput of the demo family in PyTorch on whatever device is present (a GPU when
lent one): what the torch engine backend can reach before any HTTP or queueing overhead.

`python -m models.gpu_bench CHECKPOINT_DIR` prints one JSON line per measurement:
MaskGIT clips per second (12 steps, network calls only) by batch size and precision, the
autoregressive prior with its KV cache (256 sequential calls), the tokenizer decoder and each
super-resolution stage. Timings use CUDA events after warm-up.
"""
from __future__ import annotations

import json
import sys
import time

import torch

from models.checkpoint import load_network


def timed(fn, repeat: int = 5) -> float:
    """Median seconds of fn() after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


@torch.no_grad()
def main(ckpt: str) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    prior, _ = load_network(ckpt, "masked_prior")
    ar, _ = load_network(ckpt, "ar_prior")
    tok, _ = load_network(ckpt, "tokenizer")
    prior, ar, tok = prior.to(device), ar.to(device), tok.to(device)
    n, v = prior.cfg.num_tokens, prior.cfg.vocab_size
    emit = lambda **kw: print(json.dumps({"device": name, **kw}), flush=True)  # noqa: E731
    for precision in ("fp32", "bf16"):
        ctx = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        for batch in (1, 8, 32, 64, 128):
            tokens = torch.full((batch, n), v, device=device)
            cond = torch.full((batch, n), v, device=device)
            state = torch.zeros((batch, n), dtype=torch.long, device=device)
            cls = torch.zeros(batch, dtype=torch.long, device=device)

            def run():
                with ctx:
                    for _ in range(12):
                        prior(tokens, cond, state, cls)

            s = timed(run)
            emit(network="masked_prior", what="12-step MaskGIT, network only", precision=precision,
                 batch=batch, seconds=round(s, 4), clips_per_second=round(batch / s, 1))
    for batch in (1, 32):
        cond = torch.full((batch, n), v, device=device)
        state = torch.zeros((batch, n), dtype=torch.long, device=device)

        def run_ar():
            ids = torch.full((batch, 1), v, device=device)
            L, H, D = len(ar.blocks), ar.cfg.heads, ar.cfg.dim // ar.cfg.heads
            pk = torch.zeros((L, batch, H, 0, D), device=device)
            pv = torch.zeros_like(pk)
            for i in range(n):
                logits, pk, pv = ar(ids, cond[:, i:i + 1], state[:, i:i + 1], pk, pv)
                ids = logits[:, -1].argmax(-1, keepdim=True)

        s = timed(run_ar, repeat=3)
        emit(network="ar_prior", what=f"{n} KV-cached steps, greedy", precision="fp32", batch=batch,
             seconds=round(s, 4), clips_per_second=round(batch / s, 2))
    for batch in (1, 32):
        tokens = torch.randint(0, v, (batch,) + tuple(prior.cfg.grid), device=device)
        s = timed(lambda: tok.decode(tokens))
        emit(network="decoder", precision="fp32", batch=batch, seconds=round(s, 4), clips_per_second=round(batch / s, 1))
    for stage, side in (("sr_64", 32), ("sr_128", 64)):
        try:
            sr, _ = load_network(ckpt, stage)
        except FileNotFoundError:
            continue
        sr = sr.to(device)
        for batch in (1, 16):
            x = torch.rand(batch, 3, 16, side, side, device=device)
            lvl = torch.zeros(batch, device=device)
            s = timed(lambda: sr(x, lvl))
            emit(network=stage, precision="fp32", batch=batch, seconds=round(s, 4), clips_per_second=round(batch / s, 1))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "models/checkpoints/demo")
