"""Every limit and knob of the server, as one pydantic-settings object.

Each field can be set by an environment variable `KINETOSCOPE_<FIELD>` (e.g.
`KINETOSCOPE_REDIS_URL=redis://localhost:6379/0`) or by the command line that builds it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL_REPOSITORY = Path("model_repository")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KINETOSCOPE_", extra="ignore")

    # --- where models come from and how they run ---------------------------------------------
    model_repository: Path = Field(DEFAULT_MODEL_REPOSITORY, description="folder of model folders, each with manifest.json")
    default_model: str | None = Field(None, description="model id used when a request names none; default: the first")
    backend: str = Field("onnxruntime", description="engine backend: onnxruntime | tensorrt | torch")
    intra_op_threads: int = Field(0, description="ONNX Runtime threads per session; 0 = the CPUs this process may use")
    onnx_providers: list[str] = Field(default_factory=list, description="ONNX Runtime execution providers in order; "
                                      "empty = TensorRT, CUDA, CPU, those installed")
    onnx_thread_spinning: bool = Field(False, description="ONNX Runtime intra-op threads spin between parallel "
                                       "sections instead of sleeping: faster on a machine the server has to itself, "
                                       "much slower when other processes want the cores (BENCHMARKS.md)")
    tensorrt_max_batch: int | None = Field(None, ge=1, description="TensorRT backend: use the plans built with this "
                                           "max batch (`export tensorrt --max-batch`); none = the largest built")
    tensorrt_precision: str | None = Field(None, description="TensorRT backend: use the plans of this precision label "
                                           "(typed, fp32, fp16, bf16: key.json's `precision`); none = any")
    torch_device: str = Field("auto", description="torch backend: the device the programs run on: auto (CUDA when "
                              "there, else the CPU), cpu, cuda, cuda:N")
    torch_dtype: Literal["fp32", "bf16"] = Field("fp32", description="torch backend: fp32, or bf16 (every network "
                                                 "call under bfloat16 autocast; outputs still come back float32)")
    torch_compile: str | None = Field(None, description="torch backend: torch.compile mode (default, reduce-overhead, "
                                      "max-autotune, max-autotune-no-cudagraphs) of the networks whose only dynamic "
                                      "dimension is the batch, compiled on first use, batches padded to powers of "
                                      "two; none = eager. The autoregressive prior always runs eagerly")
    torch_cuda_graphs: bool = Field(False, description="torch backend on CUDA: capture the networks whose only "
                                    "dynamic dimension is the batch as one CUDA graph per power-of-two batch (on "
                                    "first use; batches padded) and replay them: less launch overhead. The "
                                    "autoregressive prior always runs eagerly")

    # --- batching ------------------------------------------------------------------------------
    max_batch_size: int = Field(16, description="largest batch one network call takes")
    engine_threads: int = Field(16, description="threads that run network calls; each batching queue uses one at a time")
    max_batch_wait_ms: float = Field(2.0, description="how long a batch waits for more requests once one is ready")
    batching: bool = Field(True, description="step-level batching across requests; off = one request per call")

    # --- jobs -----------------------------------------------------------------------------------
    redis_url: str | None = Field(None, description="Redis for the job queue; none = embedded in-process queue")
    job_store_dir: Path | None = Field(Path(".kinetoscope/jobs"), description="the embedded queue keeps its jobs, "
                                       "inputs and results here across restarts (SQLite + files); empty = in memory only")
    embedded_workers: bool = Field(True, description="with no Redis, run the worker inside the API process")
    worker_concurrency: int = Field(16, description="jobs one worker process runs at once (they share batches)")
    max_queue_length: int = Field(256, description="queued jobs beyond which POST /v1/videos answers 429")
    retry_after_seconds: int = Field(5, description="Retry-After sent with 429")
    job_ttl_seconds: int = Field(24 * 3600, description="jobs and their content expire this long after finishing")
    lease_seconds: float = Field(15.0, description="a job whose worker sent no heartbeat for this long is reclaimed")
    heartbeat_seconds: float = Field(3.0, description="how often a worker renews its jobs' leases")
    max_attempts: int = Field(3, description="failed attempts (the job's own errors) before it fails for good (dead letter)")
    max_lost_leases: int = Field(10, description="times a job's worker may die holding it (reclaimed, run again) before "
                                 "it fails for good; counted apart from max_attempts")
    checkpoint_every_steps: int = Field(1, ge=0, description="a running job's decoding state is saved every this many "
                                        "MaskGIT steps (and at each window's end), so a reclaimed job resumes where it "
                                        "was; 0 = never (a reclaimed job starts again)")
    ar_preview_every_tokens: int = Field(32, ge=1, description="a job with previews under the autoregressive sampler "
                                         "publishes one every this many sampled tokens (and at each window's end)")
    claim_wait_seconds: float = Field(0.5, gt=0, description="how long one claim waits for a job (also how fast a "
                                      "stopping worker notices)")
    cancel_poll_seconds: float = Field(0.5, gt=0, description="how often a running job looks for a cancel request")
    progress_push_seconds: float = Field(0.25, gt=0, description="a running job's progress is written at most this often")
    queue_ping_timeout_seconds: float = Field(2.0, gt=0, description="/readyz: a job store slower than this to "
                                              "answer a ping counts as unreachable")
    results_sweep_seconds: float = Field(60.0, gt=0, description="Redis: how often a worker tidies expired jobs' "
                                         "files and index entries")
    dead_letter_maxlen: int = Field(10_000, ge=1, description="Redis: the dead-letter stream keeps about this many entries")
    result_inline_max_bytes: int = Field(8 << 20, description="MP4s up to this size are stored in Redis; larger go to results_dir")
    results_dir: Path | None = Field(None, description="shared folder for large results (all workers and API replicas)")
    sse_keepalive_seconds: float = Field(15.0, gt=0, description="GET /v1/videos/{id}/events sends a keep-alive "
                                         "comment this often, so proxies do not close a quiet stream")
    poll_interval_seconds: float = Field(1.0, description="poll interval the API suggests to clients (Retry-After / X-Poll-Interval)")
    max_wait_seconds: float = Field(60.0, description="longest Prefer: wait=N the API honours")

    # --- request limits --------------------------------------------------------------------------
    max_body_bytes: int = Field(16 << 20, description="largest request body")
    max_upload_bytes: int = Field(8 << 20, description="largest input video (decoded from base64 or uploaded)")
    max_input_frames: int = Field(256, description="most frames read from an input video")
    max_input_pixels: int = Field(1024 * 1024, description="largest input frame, width x height")
    max_input_decoded_bytes: int = Field(256 << 20, description="most bytes an input's decoded frames may take "
                                         "together (a small file can hold a huge video)")
    max_concurrent_decodes: int = Field(2, ge=1, description="input videos one API process reads at once "
                                        "(POST /v1/videos checks, tokenize and score decodes); more wait their turn. "
                                        "A check holds about one frame, a tokens decode up to max_input_decoded_bytes")
    max_num_frames: int = Field(128, description="longest output (frames), autoregressive extension included")
    max_steps: int = Field(64, description="most MaskGIT steps a request may ask for")
    max_job_seconds: float = Field(3600.0, gt=0, description="every job's deadline at the latest (seconds from "
                                   "creation); a request's deadline_seconds may only be shorter")
    max_metadata_pairs: int = Field(16, description="most key/value pairs in a job's metadata")
    max_metadata_key_chars: int = Field(64, description="longest metadata key")
    max_metadata_value_chars: int = Field(512, description="longest metadata value")

    # --- webhooks (server/webhooks.py) ------------------------------------------------------------
    webhook_secret: str | None = Field(None, description="whsec_<base64>: the key deliveries are signed with "
                                       "(Standard Webhooks); a request may name a webhook only when it is set")
    webhook_allow_private_addresses: bool = Field(False, description="deliver to loopback, link-local and private "
                                                  "addresses too (tests, private networks); off: public ones only")
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="one delivery attempt's connect+answer limit")
    webhook_retry_seconds: float = Field(3600.0, gt=0, description="a delivery is retried (exponential backoff) "
                                         "for at most this long after its event, then given up")
    webhook_backoff_seconds: float = Field(1.0, gt=0, description="the first retry's delay; each next one doubles "
                                           "(at most 5 minutes)")
    webhook_poll_seconds: float = Field(0.5, gt=0, description="how often the delivery loop looks for due deliveries")
    webhook_batch: int = Field(16, ge=1, description="deliveries one process sends at once")
    webhook_progress_step: int = Field(10, ge=1, le=100, description="a `progress` event every this many percent")

    # --- HTTP -------------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="bind address; 127.0.0.1 unless told otherwise")
    port: int = Field(8000, description="port")
    allowed_hosts: list[str] = Field(default_factory=list, description="Host headers the server answers (DNS "
                                     "rebinding guard); empty = loopback names when bound to a loopback address, "
                                     "any otherwise; [\"*\"] = any")
    header_timeout_seconds: float = Field(20.0, gt=0, description="a request's head (request line and headers) must "
                                          "arrive within this, from the connection's opening or the request's first "
                                          "byte; else 408 and the connection is closed (slowloris)")
    body_timeout_seconds: float = Field(60.0, gt=0, description="a request's whole body must arrive within this "
                                        "after its head; else 408 and the connection is closed (at the default, a "
                                        "16 MiB body needs about 2.3 Mbit/s)")
    api_keys: list[str] = Field(default_factory=list, description="if set, Bearer keys required on every endpoint but /healthz and /readyz")
    share_jobs: bool = Field(False, description="with API keys: every key sees every job (default: a job belongs to "
                             "the key that made it; other keys get 404)")
    log_level: str = Field("info", description="log level")
    shutdown_seconds: float = Field(1.0, ge=0, description="on Ctrl-C / SIGTERM: how long running embedded jobs and "
                                    "open connections get to finish; then the jobs are abandoned (with job_store_dir "
                                    "they run again after a restart) and connections closed. A second Ctrl-C exits at once")

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value):
        if value:
            from server.webhooks import check_secret

            check_secret(value)
        return value or None

    @field_validator("torch_compile", mode="before")
    @classmethod
    def _compile_none(cls, value):
        if value is None or value in ("", "none", "None", "eager"):
            return None
        from server.engines.torch import COMPILE_MODES  # no torch import: the module imports it lazily

        if value not in COMPILE_MODES:
            raise ValueError(f"torch_compile is one of {', '.join(COMPILE_MODES)} or none")
        return value

    @field_validator("job_store_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        return None if value in ("", "none", "None") else value
