"""Peers for a side-by-side benchmark (#10 item 3): the same model repository served by two other
batching policies, so that `kinetoscope bench` can drive all three with the same load.

- `litserve_peer`: LitServe's request-level dynamic batching. LitServe gathers up to
  `max_batch_size` requests for up to `batch_timeout` seconds into one `predict` call, which runs
  the whole decode loop of that batch in lockstep (static batching: nothing joins a batch that has
  started; a request that finishes early waits for its batch's last one).
- `fastapi_peer`: one request at a time behind a lock, the plain endpoint a user writes first.
- Kinetoscope itself (`kinetoscope serve`): step-level batching, every decoding step of every
  running request in one network call, requests joining and leaving between steps.

Both peers run the server's own pieces below its scheduler (engines, samplers and steppers,
conditioning, validation, video I/O; `lockstep.py`, `common.py`), accept the body of
`POST /v1/videos`, and answer with the video itself plus X-Queue-Seconds / X-Compute-Seconds
(and X-Batch-Size / X-Batch-Id: the predict call that served the request). The peers live here,
not in server/, and litserve is an optional dependency (`pip install -e '.[peers]'`).

`launch.serve_target` starts any of the three on a free port; `side_by_side.run_side_by_side` is
`kinetoscope bench-runtime peers`.
"""
