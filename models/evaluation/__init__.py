"""Measure the served model on the held-out Moving Digits split: `kinetoscope eval`.

Evaluation measures what is served (design.md): every number comes from the exported engines
run by ONNX Runtime on the CPU through `server.pipeline.Pipeline`, the same object the worker
calls, on clips of the held-out test split (../shared/spec/moving-digits.md) that no network
was trained on. Requests run concurrently (bounded), so the pipeline batches them as a busy
server would; the sampler timing rows alone run one request at a time.

What is measured, each beside the bar or baseline that says whether it is good:
- tokenizer: encoder -> decoder reconstruction PSNR;
- class-conditional generation: a reader (an 8x8 digit classifier trained on the training split
  glyphs of scikit-learn's digits, never on videos) reads every frame of a generated clip; the
  clip is right when its majority vote is the requested class;
- frame prediction: PSNR of the predicted frames beside repeating the last given frame;
- inpainting / outpainting (center): PSNR in the generated region beside simple fills;
- super-resolution: each learned x2 stage and the whole cascade beside bicubic upsampling;
- MaskGIT versus autoregressive decoding: quality and seconds per clip.

PSNR is computed on [0, 1] floats of the served uint8 frames, per clip, then averaged over
clips; a perfect clip counts as MAX_PSNR dB instead of infinity.

The package, by job: `metrics.py` (PSNR, masks, baselines, class scores: pure numpy), `reader.py`
(the digit reader), `runs.py` (requests run through the pipeline), `measurements.py` (every row
and `evaluate`, what `kinetoscope eval` runs) and `report.py` (rows, the Markdown table, JSON).
"""
