/** Request and response shapes of the Kinetoscope HTTP API, version 1 (snake_case, as on the wire). */

export type Task =
  | 'class_conditional'
  | 'class_conditional_frame_prediction'
  | 'frame_prediction'
  | 'frame_interpolation'
  | 'inpainting'
  | 'outpainting';

export type JobStatus = 'queued' | 'in_progress' | 'completed' | 'failed' | 'canceled' | 'expired';

export type MaskPreset = 'center' | 'vertical' | 'horizontal' | 'dynamic';

export type WebhookEvent = 'started' | 'progress' | 'completed' | 'failed' | 'canceled' | 'expired';

/** `[x0, y0, x1, y1]` in relative coordinates (0..1). */
export type Box = [number, number, number, number];

/** A preset, or a box (one for the whole clip, or one per frame). */
export type Mask = { preset: MaskPreset } | { box: Box | Box[] };

export interface SamplerParams {
  method?: 'maskgit' | 'autoregressive';
  steps?: number;
  temperature?: number;
  choice_temperature?: number;
  guidance_scale?: number;
  top_k?: number | null;
}

/** Bytes of an input video. A `Blob`/`File` keeps its name and type in the upload. */
export type Uploadable = Blob | Uint8Array | ArrayBuffer;

export interface VideoCreateParams {
  /** A model id from `models.list()`; default: the server's default model. */
  model?: string;
  task: Task;
  class_label?: number | null;
  /**
   * The input video of the conditional tasks (MP4, WebM, GIF or PNG). A string is sent as
   * base64 in a JSON body; bytes (Blob, File, Uint8Array, ArrayBuffer) are uploaded as a
   * multipart/form-data file part named `input_video`.
   */
  input_video?: string | Uploadable;
  /** Instead of `input_video`: a completed job whose output is the input. */
  input_video_id?: string;
  mask?: Mask;
  condition_frames?: number;
  num_frames?: number;
  /** `"WxH"`, one of the model's sizes. */
  size?: string;
  fps?: number;
  seed?: number;
  sampler?: SamplerParams;
  priority?: 'high' | 'normal' | 'low';
  /** A few string pairs kept with the job and echoed back. */
  metadata?: Record<string, string>;
  /** Seconds: queued past it -> expired; running MaskGIT -> best-so-far video (`truncated`). */
  deadline_seconds?: number;
  /** Publish the current guess after every MaskGIT step, or every few autoregressive tokens (`preview` events, `variant=preview`). */
  previews?: boolean;
  /**
   * Inpainting/outpainting of a completed job's own tokens, instead of an input video: only the
   * tokens whose footprint meets the mask's region are generated again; every other stays exactly.
   */
  edit?: { from: string };
  /** An http(s) URL that gets a signed POST of the job object at each of `webhook_events`. */
  webhook?: string;
  /** Default: the terminal ones (completed, failed, canceled, expired). */
  webhook_events?: WebhookEvent[];
  /** The video variant's format (default mp4); `variant=frames` is always lossless. */
  output_format?: 'mp4' | 'webm' | 'gif';
}

/** `videos.edit(id, params)`: an edit's fields; its input is the job it edits. */
export interface EditParams extends Omit<VideoCreateParams, 'task' | 'mask' | 'edit' | 'input_video' | 'input_video_id'> {
  /** Default `inpainting` (generate inside the mask); `outpainting` generates outside it. */
  task?: 'inpainting' | 'outpainting';
  /** The region: a Mask, or one `[x0, y0, x1, y1]` box (relative). */
  mask: Mask | Box;
}

export interface ErrorObject {
  type: string;
  code: string;
  message: string;
  param: string | null;
}

/** The job object every job endpoint returns. Times are Unix seconds. */
export interface Video {
  id: string;
  object: 'video';
  model: string;
  task: Task;
  status: JobStatus;
  /** Integer percent, rising monotonically while in progress. */
  progress: number;
  queue_position: number | null;
  created_at: number;
  started_at: number | null;
  completed_at: number | null;
  /** When the content is deleted. */
  expires_at: number | null;
  error: { code: string; message: string } | null;
  size: string;
  num_frames: number;
  fps: number;
  seed: number;
  /** The request as the server runs it, every default filled in. */
  request: NormalizedRequest;
  /** The string pairs given at create. */
  metadata: Record<string, string>;
  /** Set when the deadline cut MaskGIT decoding short. */
  truncated: { steps_done: number; steps: number } | null;
  /** Null unless the job has a webhook: where, which events, and how deliveries went. */
  webhook_status: {
    url: string;
    events: WebhookEvent[];
    enqueued: number;
    delivered: number;
    failed: number;
    last: { event: string; delivered: boolean; attempts: number; detail: string; at: number } | null;
  } | null;
  /** Absolute URLs of the job's endpoints. */
  urls: { self: string; content: string; thumbnail: string; events: string; cancel: string };
}

export interface NormalizedRequest {
  task: Task;
  class_label: number | null;
  mask: Mask | null;
  condition_frames: number | null;
  num_frames: number;
  size: string;
  fps: number;
  seed: number;
  sampler: Required<SamplerParams>;
  priority: 'high' | 'normal' | 'low';
  output_format: 'mp4' | 'webm' | 'gif';
  input_video_id: string | null;
  has_input: boolean;
  previews: boolean;
  /** The job an edit started from (`edit.from`), else null. */
  edit_from: string | null;
}

export interface VideoListParams {
  /** Cursor: list the jobs after (older than) this job id. */
  after?: string;
  /** Page size. */
  limit?: number;
  /** Only jobs with this status, task or model. */
  status?: JobStatus;
  task?: Task;
  model?: string;
}

export interface VideoList {
  object: 'list';
  data: Video[];
  has_more: boolean;
  first_id: string | null;
  last_id: string | null;
}

export interface VideoDeleted {
  id: string;
  object: 'video.deleted';
  deleted: boolean;
}

/**
 * video: in the request's output_format; thumbnail: PNG; frames: the lossless frames, PNGs in a
 * zip; tokens, confidence: JSON; preview: a `previews: true` job's latest preview (PNG).
 */
export type ContentVariant = 'video' | 'thumbnail' | 'frames' | 'tokens' | 'confidence' | 'preview';

export interface Model {
  id: string;
  object: 'model';
  description: string;
  tasks: Task[];
  /** Output sizes, `"WxH"`, base size first. */
  sizes: string[];
  window_frames: number;
  default_condition_frames: number;
  fps: number;
  /** Class names; a class label is an index into this list. */
  classes: string[];
  samplers: string[];
  /** Per task: the sampler a request without sampler fields gets, and each method's settings. */
  sampler_defaults: Record<string, TaskSamplerDefaults>;
  /** The engine backend: onnxruntime, tensorrt or torch. */
  backend: string;
  /** The server's longest output in frames, autoregressive extension included. */
  max_num_frames: number;
}

export interface TaskSamplerDefaults {
  method: 'maskgit' | 'autoregressive';
  methods: Record<string, Required<SamplerParams>>;
}

/** POST /v1/score: the exact log-likelihood (nats) under the autoregressive prior. */
export interface ScoreResult {
  model: string;
  log_likelihood: number;
  bits_per_token: number;
  per_latent_frame: number[];
}

/** `variant=tokens`: the job's token grids, one flat raster list of t*h*w ids per decoded window. */
export interface TokenDocument {
  model: string;
  token_grid: number[];
  vocab_size: number;
  tokenizer_sha256?: string;
  windows: number[][];
}

/** `variant=confidence` (MaskGIT jobs): per window, the sampler's confidence per token, 0..scale. */
export interface ConfidenceDocument {
  model: string;
  token_grid: number[];
  scale: number;
  windows: number[][];
}

export interface TokenizeResult {
  model: string;
  /** (t, h, w) */
  token_grid: number[];
  vocab_size: number;
  /** t*h*w ids in raster order */
  tokens: number[];
}

export interface ModelList {
  object: 'list';
  data: Model[];
}

export const TERMINAL_STATUSES: readonly JobStatus[] = ['completed', 'failed', 'canceled', 'expired'];

export function isTerminal(job: Pick<Video, 'status'>): boolean {
  return TERMINAL_STATUSES.includes(job.status);
}
