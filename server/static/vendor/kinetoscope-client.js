// GENERATED FILE - do not edit. Built from clients/js/src by `npm run build:playground`
// (clients/js/scripts/build-playground.mjs): the kinetoscope-client SDK bundled as one ES module.

// dist/errors.js
var KinetoscopeError = class extends Error {
  constructor(message, options) {
    super(message);
    this.name = new.target.name;
    if (options && "cause" in options)
      this.cause = options.cause;
  }
};
var APIError = class _APIError extends KinetoscopeError {
  constructor(status, body, headers, message) {
    const err = extractError(body);
    super(message ?? formatMessage(status, err, body));
    this.status = status;
    this.code = err?.code ?? null;
    this.type = err?.type ?? null;
    this.param = err?.param ?? null;
    this.body = body;
    this.headers = headers;
    this.requestId = headers.get("x-request-id");
  }
  /** The error subclass that fits `status`. */
  static generate(status, body, headers) {
    const Cls = STATUS_CLASSES[status] ?? (status >= 500 ? InternalServerError : _APIError);
    return new Cls(status, body, headers);
  }
};
var BadRequestError = class extends APIError {
};
var AuthenticationError = class extends APIError {
};
var PermissionDeniedError = class extends APIError {
};
var NotFoundError = class extends APIError {
};
var ConflictError = class extends APIError {
};
var PayloadTooLargeError = class extends APIError {
};
var UnsupportedMediaTypeError = class extends APIError {
};
var UnprocessableEntityError = class extends APIError {
};
var RateLimitError = class extends APIError {
  /** Seconds the server asked us to wait (`Retry-After`), when it said. */
  get retryAfter() {
    const value = this.headers.get("retry-after");
    const seconds = value === null ? NaN : Number(value);
    return Number.isFinite(seconds) ? seconds : null;
  }
};
var InternalServerError = class extends APIError {
};
var ServiceUnavailableError = class extends InternalServerError {
};
var STATUS_CLASSES = {
  400: BadRequestError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  413: PayloadTooLargeError,
  415: UnsupportedMediaTypeError,
  422: UnprocessableEntityError,
  429: RateLimitError,
  503: ServiceUnavailableError
};
var APIConnectionError = class extends KinetoscopeError {
  constructor(message = "Connection error.", options) {
    super(message, options);
  }
};
var APITimeoutError = class extends APIConnectionError {
  constructor(message = "Request timed out.", options) {
    super(message, options);
  }
};
var APIUserAbortError = class extends KinetoscopeError {
  constructor(message = "Request was aborted.", options) {
    super(message, options);
  }
};
var JobFailedError = class extends KinetoscopeError {
  constructor(job) {
    super(`job ${job.id} ended ${job.status}: ${job.error?.message ?? "no error detail"}`);
    this.job = job;
    this.code = job.error?.code ?? null;
  }
};
var WaitTimeoutError = class extends KinetoscopeError {
  constructor(job, timeout) {
    super(`job ${job.id} still ${job.status} (${job.progress}%) after ${timeout} ms`);
    this.job = job;
    this.timeout = timeout;
  }
};
function extractError(body) {
  if (body && typeof body === "object" && "error" in body) {
    const err = body.error;
    if (err && typeof err === "object")
      return err;
  }
  return null;
}
function formatMessage(status, err, body) {
  if (err?.message)
    return `${status} ${err.message}`;
  if (typeof body === "string" && body)
    return `${status} ${body.slice(0, 500)}`;
  if (body && typeof body === "object")
    return `${status} ${JSON.stringify(body).slice(0, 500)}`;
  return `${status} status code (no body)`;
}

// dist/resources/models.js
var Models = class {
  constructor(client) {
    this.client = client;
  }
  /** The models the server runs (the default model first), with tasks, sizes, classes, samplers and backend. */
  async list(options = {}) {
    const { data } = await this.client.request({ method: "GET", path: "/v1/models", ...options });
    return data.data;
  }
  /** One model. */
  async retrieve(id, options = {}) {
    const { data } = await this.client.request({ method: "GET", path: `/v1/models/${encodeURIComponent(id)}`, ...options });
    return data;
  }
};

// dist/content.js
var VideoContent = class {
  constructor(data, response) {
    this.data = data;
    this.response = response;
    this.contentType = response.headers.get("content-type") ?? "application/octet-stream";
  }
  get size() {
    return this.data.byteLength;
  }
  arrayBuffer() {
    return this.data;
  }
  bytes() {
    return new Uint8Array(this.data);
  }
  /** The bytes as UTF-8 text. */
  text() {
    return new TextDecoder().decode(this.data);
  }
  /** The JSON variants (`tokens`, `confidence`) parsed, e.g. `content.json<TokenDocument>()`. */
  json() {
    return JSON.parse(this.text());
  }
  /** A Blob with the content's type; in a browser, `URL.createObjectURL(content.blob())` plays it. */
  blob() {
    return new Blob([this.data], { type: this.contentType });
  }
  /** Node only: writes the content to `path`. */
  async writeToFile(path) {
    const specifier = "node:fs/promises";
    const fs = await import(specifier);
    await fs.writeFile(path, this.bytes());
  }
};

// dist/resources/tokens.js
var Tokens = class {
  constructor(client) {
    this.client = client;
  }
  /** A video (bytes, or a base64 string) -> the token ids of its first window. */
  async tokenize(video, options = {}) {
    const { model, ...rest } = options;
    let body;
    if (typeof video === "string") {
      body = { input_video: video, ...model ? { model } : {} };
    } else {
      const form = new FormData();
      form.append("input_video", video instanceof Blob ? video : new Blob([video]), "input");
      if (model)
        form.append("model", model);
      body = form;
    }
    const { data } = await this.client.request({ method: "POST", path: "/v1/tokenize", body, ...rest });
    return data;
  }
  /** t*h*w token ids -> an MP4 (at `size`, through the super-resolution cascade). */
  async detokenize(tokens, options = {}) {
    const { size, model, ...rest } = options;
    const { data, response } = await this.client.requestBytes({
      method: "POST",
      path: "/v1/detokenize",
      body: { tokens, ...size ? { size } : {}, ...model ? { model } : {} },
      ...rest,
      headers: { Accept: "*/*", ...rest.headers }
    });
    return new VideoContent(data, response);
  }
  /**
   * A video (bytes, or a base64 string) or its token ids -> its exact log-likelihood (nats) under
   * the model's autoregressive prior, with bits per token and the sum per latent frame.
   */
  async score(input, options = {}) {
    const { model, ...rest } = options;
    let body;
    if ("tokens" in input) {
      body = { tokens: input.tokens, ...model ? { model } : {} };
    } else if (typeof input.video === "string") {
      body = { input_video: input.video, ...model ? { model } : {} };
    } else {
      const form = new FormData();
      const video = input.video;
      form.append("input_video", video instanceof Blob ? video : new Blob([video]), "input");
      if (model)
        form.append("model", model);
      body = form;
    }
    const { data } = await this.client.request({ method: "POST", path: "/v1/score", body, ...rest });
    return data;
  }
};

// dist/pagination.js
var Page = class {
  constructor(body, fetchPage) {
    this.fetchPage = fetchPage;
    this.body = body;
    this.data = body.data ?? [];
    this.hasMore = Boolean(body.has_more) && this.data.length > 0;
  }
  /** The cursor for the next page: the server's, else the last item's id. */
  get nextAfter() {
    if (!this.hasMore)
      return null;
    return this.body.next_after ?? this.body.last_id ?? this.data[this.data.length - 1]?.id ?? null;
  }
  hasNextPage() {
    return this.nextAfter !== null;
  }
  async getNextPage() {
    const after = this.nextAfter;
    if (after === null)
      throw new Error("no next page; check hasNextPage() first");
    return this.fetchPage(after);
  }
  /** This page and every later one. */
  async *iterPages() {
    let page = this;
    yield page;
    while (page.hasNextPage()) {
      page = await page.getNextPage();
      yield page;
    }
  }
  /** Every item of this page and the later ones, fetching pages as needed. */
  async *[Symbol.asyncIterator]() {
    for await (const page of this.iterPages())
      yield* page.data;
  }
};
var PagePromise = class {
  constructor(promise) {
    this.promise = promise;
  }
  then(onfulfilled, onrejected) {
    return this.promise.then(onfulfilled, onrejected);
  }
  catch(onrejected) {
    return this.promise.catch(onrejected);
  }
  async *[Symbol.asyncIterator]() {
    yield* await this.promise;
  }
};

// dist/base64.js
function decodeBase64(text) {
  const binary = atob(text);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}
function encodeBase64(bytes) {
  let binary = "";
  for (const b of bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes))
    binary += String.fromCharCode(b);
  return btoa(binary);
}

// dist/preview.js
var Preview = class {
  constructor(data) {
    this.id = data.id;
    this.step = data.step;
    this.steps = data.steps;
    this.decided = data.decided;
    this.image = data.image;
    this.token_grid = Array.isArray(data.token_grid) ? data.token_grid : null;
    this.confidence = typeof data.confidence === "string" ? decodeBase64(data.confidence) : null;
  }
  /** The image's media type, e.g. `image/png`. */
  get imageType() {
    return this.image.slice("data:".length).split(/[;,]/, 1)[0];
  }
  /** The image file itself (PNG or WebP bytes). */
  imageBytes() {
    const comma = this.image.indexOf(",");
    const head = this.image.slice(0, comma);
    const body = this.image.slice(comma + 1);
    return head.endsWith(";base64") ? decodeBase64(body) : new TextEncoder().encode(decodeURIComponent(body));
  }
  /** The confidence (0..1) of token (t, y, x), or null without a map. */
  confidenceAt(t, y, x) {
    if (!this.confidence || !this.token_grid)
      return null;
    const [, h, w] = this.token_grid;
    return this.confidence[(t * h + y) * w + x] / 255;
  }
};

// dist/sse.js
async function* parseSSE(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let data = [];
  let event = "";
  let lastId = "";
  let retry = null;
  let finished = false;
  const processLine = (line) => {
    if (line === "") {
      const out = data.length ? { event: event || "message", data: data.join("\n"), id: lastId, retry } : null;
      data = [];
      event = "";
      retry = null;
      return out;
    }
    if (line.startsWith(":"))
      return null;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" "))
      value = value.slice(1);
    if (field === "data")
      data.push(value);
    else if (field === "event")
      event = value;
    else if (field === "id" && !value.includes("\0"))
      lastId = value;
    else if (field === "retry" && /^\d+$/.test(value))
      retry = Number(value);
    return null;
  };
  try {
    let first = true;
    while (true) {
      const { value, done } = await reader.read();
      if (done) {
        buffer += decoder.decode();
        finished = true;
      } else {
        buffer += decoder.decode(value, { stream: true });
      }
      if (first && buffer.length) {
        if (buffer.charCodeAt(0) === 65279)
          buffer = buffer.slice(1);
        first = false;
      }
      let match;
      while (match = /\r\n|\r|\n/.exec(buffer)) {
        if (match[0] === "\r" && match.index === buffer.length - 1 && !finished)
          break;
        const line = buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
        const out = processLine(line);
        if (out)
          yield out;
      }
      if (finished)
        return;
    }
  } finally {
    if (!finished)
      await reader.cancel().catch(() => {
      });
    reader.releaseLock();
  }
}

// dist/types.js
var TERMINAL_STATUSES = ["completed", "failed", "canceled", "expired"];
function isTerminal(job) {
  return TERMINAL_STATUSES.includes(job.status);
}

// dist/util.js
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted)
      return reject(new APIUserAbortError(void 0, { cause: signal.reason }));
    const onAbort = () => {
      clearTimeout(timer);
      reject(new APIUserAbortError(void 0, { cause: signal?.reason }));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
function uuid4() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function")
    return c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c && typeof c.getRandomValues === "function")
    c.getRandomValues(bytes);
  else
    for (let i = 0; i < 16; i++)
      bytes[i] = Math.floor(Math.random() * 256);
  bytes[6] = bytes[6] & 15 | 64;
  bytes[8] = bytes[8] & 63 | 128;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
function suggestedDelayMs(headers) {
  if (!headers)
    return null;
  for (const name of ["x-poll-interval", "retry-after"]) {
    const value = headers.get(name);
    if (value === null || value.trim() === "")
      continue;
    const seconds = Number(value);
    if (Number.isFinite(seconds) && seconds >= 0)
      return seconds * 1e3;
    const date = Date.parse(value);
    if (Number.isFinite(date))
      return Math.max(0, date - Date.now());
  }
  return null;
}
function readEnv(name) {
  const proc = globalThis.process;
  const value = proc?.env?.[name];
  return value === void 0 || value === "" ? void 0 : value;
}
function linkSignals(controller, ...signals) {
  const cleanups = [];
  for (const signal of signals) {
    if (!signal)
      continue;
    if (signal.aborted) {
      controller.abort(signal.reason);
      break;
    }
    const onAbort = () => controller.abort(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    cleanups.push(() => signal.removeEventListener("abort", onAbort));
  }
  return () => cleanups.forEach((fn) => fn());
}
function isBytes(value) {
  return typeof Blob !== "undefined" && value instanceof Blob || value instanceof Uint8Array || value instanceof ArrayBuffer;
}
var RETRY_INITIAL_MS = 500;
var RETRY_MAX_MS = 8e3;
var RETRY_AFTER_MAX_MS = 6e4;
function retryDelayMs(attempt, headers) {
  const suggested = headers ? suggestedDelayMs(headers) : null;
  if (suggested !== null && suggested <= RETRY_AFTER_MAX_MS)
    return suggested;
  const base = Math.min(RETRY_INITIAL_MS * 2 ** attempt, RETRY_MAX_MS);
  return base * (1 - Math.random() * 0.25);
}

// dist/resources/videos.js
var DEFAULT_POLL_MS = 1e3;
var MIN_POLL_MS = 100;
var MAX_POLL_MS = 6e4;
var Videos = class {
  constructor(client) {
    this.client = client;
  }
  /**
   * Creates a job. Returns at once with the queued job, or, with `wait`, once it finished or the
   * wait ran out. Bytes in `input_video` go up as multipart/form-data, a string as base64 JSON.
   */
  async create(params, options = {}) {
    return (await this.createWithResponse(params, options)).data;
  }
  /** The job. */
  async retrieve(id, options = {}) {
    return (await this.retrieveWithResponse(id, options)).data;
  }
  /**
   * Recent jobs, newest first. Await it for the first page, or iterate it to walk every page:
   * `for await (const job of client.videos.list({ limit: 20 })) ...`
   */
  list(params = {}, options = {}) {
    const fetchPage = async (after) => {
      const { data } = await this.client.request({
        method: "GET",
        path: "/v1/videos",
        query: { after, limit: params.limit, status: params.status, task: params.task, model: params.model },
        ...options
      });
      return new Page(data, (next) => fetchPage(next));
    };
    return new PagePromise(fetchPage(params.after));
  }
  /** Cancels a queued or running job (idempotent); returns the job. */
  async cancel(id, options = {}) {
    const { data } = await this.client.request({ method: "POST", path: `/v1/videos/${enc(id)}/cancel`, ...options });
    return data;
  }
  /** Deletes the job and its content. */
  async delete(id, options = {}) {
    const { data } = await this.client.request({ method: "DELETE", path: `/v1/videos/${enc(id)}`, ...options });
    return data;
  }
  /** Downloads the MP4 (or, with `variant: 'thumbnail'`, the PNG of the first frame). */
  async downloadContent(id, options = {}) {
    const { variant, ...rest } = options;
    const { data, response } = await this.client.requestBytes({
      method: "GET",
      path: `/v1/videos/${enc(id)}/content`,
      query: { variant },
      ...rest,
      headers: { Accept: "*/*", ...rest.headers }
    });
    return new VideoContent(data, response);
  }
  /** The content's URL, e.g. for a `<video src>` where the server needs no API key. */
  contentURL(id, options = {}) {
    return this.client.buildURL(`/v1/videos/${enc(id)}/content`, { variant: options.variant });
  }
  async *streamEvents(id, options = {}) {
    const { previews = false, ...requestOptions } = options;
    const maxRetries = requestOptions.maxRetries ?? this.client.maxRetries;
    const reader = new EventReader(previews);
    let failures = 0;
    for (let attempt = 0; ; attempt++) {
      const { response, release } = await this.client.requestStream({
        method: "GET",
        path: `/v1/videos/${enc(id)}/events`,
        ...requestOptions,
        headers: { Accept: "text/event-stream", ...requestOptions.headers }
      });
      reader.reopened();
      let news = false;
      let dropped = null;
      try {
        if (!response.body)
          throw new APIConnectionError("the event stream has no body");
        for await (const event of parseSSE(response.body)) {
          const item = reader.read(event);
          if (item === null)
            continue;
          news = true;
          yield item;
          if (!(item instanceof Preview) && isTerminal(item))
            return;
        }
      } catch (err) {
        if (options.signal?.aborted)
          throw new APIUserAbortError(void 0, { cause: options.signal.reason });
        if (err instanceof KinetoscopeError)
          throw err;
        dropped = err;
      } finally {
        release();
      }
      failures = news ? 0 : failures + 1;
      if (failures > maxRetries) {
        throw new APIConnectionError(`the event stream of ${id} closed before the job finished`, { cause: dropped });
      }
      await sleep(retryDelayMs(failures, null), options.signal);
    }
  }
  /**
   * Each preview of a job created with `previews: true` (one per MaskGIT step, or every few
   * tokens of the autoregressive sampler: the clip as
   * guessed so far, with the sampler's confidence map) until the job ends; a finished job's are
   * replayed. Throws JobFailedError if the job failed or was canceled.
   */
  async *streamPreviews(id, options = {}) {
    for await (const item of this.streamEvents(id, { ...options, previews: true })) {
      if (item instanceof Preview)
        yield item;
      else if (isTerminal(item) && item.status !== "completed")
        throw new JobFailedError(item);
    }
  }
  /**
   * An exact edit of a completed job (`"edit": {"from": id}`): only the tokens whose footprint
   * meets the region the mask leaves to generate (inpainting, the default: inside it;
   * outpainting: outside) are generated again; every other token keeps its value exactly. The
   * clip's length and size are the source's. `params.mask`: a Mask, or an `[x0, y0, x1, y1]` box.
   */
  async edit(id, params, options = {}) {
    const { mask, task = "inpainting", ...rest } = params;
    const body = { ...rest, task, mask: Array.isArray(mask) ? { box: mask } : mask, edit: { from: id } };
    return this.create(body, options);
  }
  /**
   * Polls the job until it is terminal, sleeping what the server suggests between polls.
   * Returns the completed job; throws JobFailedError when it failed or was canceled.
   */
  async poll(id, options = {}) {
    const first = await this.retrieveWithResponse(id, { signal: options.signal });
    return this.pollFrom(first.data, first.response.headers, options);
  }
  /** Creates a job and polls it until it is terminal: `poll(create(params))`. */
  async createAndPoll(params, options = {}) {
    const { data, response } = await this.createWithResponse(params, {
      idempotencyKey: options.idempotencyKey,
      signal: options.signal
    });
    return this.pollFrom(data, response.headers, options);
  }
  /** Creates a job, waits for it, and downloads its MP4. */
  async generate(params, options = {}) {
    const job = await this.createAndPoll(params, options);
    const content = await this.downloadContent(job.id, { signal: options.signal });
    return { job, content };
  }
  async createWithResponse(params, options) {
    const { idempotencyKey, wait, ...rest } = options;
    const headers = { "Idempotency-Key": idempotencyKey ?? uuid4(), ...rest.headers };
    let timeout = rest.timeout;
    if (wait !== void 0) {
      headers.Prefer = `wait=${wait}`;
      timeout = Math.max(timeout ?? this.client.timeout, wait * 1e3 + 3e4);
    }
    const body = isBytes(params.input_video) ? toFormData(params) : params;
    return this.client.request({ method: "POST", path: "/v1/videos", body, ...rest, timeout, headers });
  }
  retrieveWithResponse(id, options) {
    return this.client.request({ method: "GET", path: `/v1/videos/${enc(id)}`, ...options });
  }
  async pollFrom(job, headers, options) {
    const deadline = options.timeout === void 0 ? Infinity : Date.now() + options.timeout;
    let seen = "";
    for (; ; ) {
      const state = `${job.status}:${job.progress}`;
      if (state !== seen) {
        seen = state;
        options.onProgress?.(job);
      }
      if (isTerminal(job)) {
        if (job.status === "completed")
          return job;
        throw new JobFailedError(job);
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new WaitTimeoutError(job, options.timeout);
      }
      const interval = clamp(options.pollInterval ?? suggestedDelayMs(headers) ?? DEFAULT_POLL_MS, MIN_POLL_MS, MAX_POLL_MS);
      await sleep(Math.min(interval, remaining), options.signal);
      const next = await this.retrieveWithResponse(job.id, { signal: options.signal });
      job = next.data;
      headers = next.response.headers;
    }
  }
};
var EventReader = class {
  constructor(previews) {
    this.previews = previews;
    this.yielded = 0;
    this.index = 0;
  }
  reopened() {
    this.index = 0;
  }
  /** The job or preview an event carries; null for keep-alives, unknown kinds and previews skipped. Throws on an error event. */
  read(event) {
    const payload = parseJSON(event.data);
    if (event.event === "preview") {
      this.index++;
      if (!this.previews || this.index <= this.yielded || !payload || typeof payload !== "object")
        return null;
      this.yielded++;
      return new Preview(payload);
    }
    if (isJob(payload))
      return payload;
    if (event.event === "error" || isErrorBody(payload)) {
      throw new KinetoscopeError(`event stream error: ${errorMessage(payload) ?? event.data}`);
    }
    return null;
  }
};
function toFormData(params) {
  const form = new FormData();
  for (const [key, value] of Object.entries(params)) {
    if (value === void 0 || value === null || key === "input_video")
      continue;
    form.append(key, typeof value === "object" ? JSON.stringify(value) : String(value));
  }
  const video = params.input_video;
  if (video instanceof Blob) {
    const name = video.name;
    form.append("input_video", video, typeof name === "string" && name ? name : "input");
  } else {
    form.append("input_video", new Blob([video], { type: "application/octet-stream" }), "input");
  }
  return form;
}
function clamp(value, low, high) {
  return Math.min(Math.max(value, low), high);
}
function isErrorBody(value) {
  return Boolean(value) && typeof value === "object" && "error" in value;
}
function errorMessage(value) {
  if (!isErrorBody(value))
    return null;
  const err = value.error;
  if (err && typeof err === "object" && typeof err.message === "string") {
    return err.message;
  }
  return typeof err === "string" ? err : null;
}
function enc(id) {
  return encodeURIComponent(id);
}
function parseJSON(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
function isJob(value) {
  return Boolean(value) && typeof value === "object" && typeof value.id === "string" && typeof value.status === "string";
}

// dist/client.js
var VERSION = "0.1.0";
var Kinetoscope = class {
  constructor(options = {}) {
    const origin = globalThis.location?.origin;
    const baseURL = options.baseURL ?? readEnv("KINETOSCOPE_BASE_URL") ?? (origin && origin !== "null" ? origin : "http://127.0.0.1:8000");
    this.baseURL = baseURL.replace(/\/+$/, "");
    this.apiKey = options.apiKey === void 0 ? readEnv("KINETOSCOPE_API_KEY") ?? null : options.apiKey || null;
    this.timeout = options.timeout ?? 12e4;
    this.maxRetries = options.maxRetries ?? 2;
    const fetchImpl = options.fetch ?? globalThis.fetch;
    if (!fetchImpl)
      throw new Error("no global fetch (Node 18+ or a browser); pass one as options.fetch");
    this.fetchImpl = options.fetch ? options.fetch : fetchImpl.bind(globalThis);
    this.defaultHeaders = options.defaultHeaders ?? {};
    this.videos = new Videos(this);
    this.models = new Models(this);
    this.tokens = new Tokens(this);
  }
  /** The absolute URL of an API path, with query parameters. */
  buildURL(path, query) {
    let url = this.baseURL + path;
    if (query) {
      const search = new URLSearchParams();
      for (const [key, value] of Object.entries(query)) {
        if (value !== void 0 && value !== null)
          search.set(key, String(value));
      }
      const qs = search.toString();
      if (qs)
        url += `?${qs}`;
    }
    return url;
  }
  /** Sends a request and parses the JSON answer. */
  async request(req) {
    return this.send(req, async (response) => ({ data: await response.json(), response }));
  }
  /** Sends a request and reads the whole body as bytes. */
  async requestBytes(req) {
    return this.send(req, async (response) => ({ data: await response.arrayBuffer(), response }));
  }
  /**
   * Sends a request and hands back the response with its body unread (for server-sent events).
   * The timeout covers only the wait for the headers; the caller's signal stays linked until
   * `release()`.
   */
  async requestStream(req) {
    let release = () => {
    };
    const response = await this.send(req, async (r) => r, (cleanup) => release = cleanup);
    return { response, release };
  }
  /**
   * The retry loop. `read` runs within the attempt's timeout. `keepLinked`, when given, takes
   * ownership of the signal link (streaming); otherwise it is undone after `read`.
   */
  async send(req, read, keepLinked) {
    const url = this.buildURL(req.path, req.query);
    const init = this.buildInit(req);
    const maxRetries = req.maxRetries ?? this.maxRetries;
    const timeout = req.timeout ?? this.timeout;
    const userSignal = req.signal ?? null;
    for (let attempt = 0; ; attempt++) {
      const retriesLeft = maxRetries - attempt;
      if (userSignal?.aborted)
        throw new APIUserAbortError(void 0, { cause: userSignal.reason });
      const controller = new AbortController();
      const unlink = linkSignals(controller, userSignal);
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, timeout);
      const done = () => {
        clearTimeout(timer);
        unlink();
      };
      let response;
      try {
        response = await this.fetchImpl(url, { ...init, signal: controller.signal });
      } catch (cause) {
        done();
        const error = this.connectionError(cause, userSignal, timedOut, timeout);
        if (error instanceof APIUserAbortError || retriesLeft <= 0)
          throw error;
        await sleep(retryDelayMs(attempt, null), userSignal);
        continue;
      }
      if (!response.ok) {
        let body;
        try {
          body = await readErrorBody(response);
        } catch (cause) {
          done();
          const error = this.connectionError(cause, userSignal, timedOut, timeout);
          if (error instanceof APIUserAbortError || retriesLeft <= 0)
            throw error;
          await sleep(retryDelayMs(attempt, null), userSignal);
          continue;
        }
        done();
        if (retriesLeft > 0 && isRetryableStatus(response.status)) {
          await sleep(retryDelayMs(attempt, response.headers), userSignal);
          continue;
        }
        throw APIError.generate(response.status, body, response.headers);
      }
      if (keepLinked) {
        clearTimeout(timer);
        keepLinked(unlink);
        return read(response);
      }
      try {
        return await read(response);
      } catch (cause) {
        throw this.connectionError(cause, userSignal, timedOut, timeout);
      } finally {
        done();
      }
    }
  }
  buildInit(req) {
    const headers = { Accept: "application/json", ...this.defaultHeaders };
    if (this.apiKey)
      headers.Authorization = `Bearer ${this.apiKey}`;
    let body;
    if (typeof FormData !== "undefined" && req.body instanceof FormData) {
      body = req.body;
    } else if (req.body !== void 0) {
      body = JSON.stringify(req.body);
      headers["Content-Type"] = "application/json";
    }
    Object.assign(headers, req.headers);
    return { method: req.method, headers, body };
  }
  connectionError(cause, userSignal, timedOut, timeout) {
    if (userSignal?.aborted)
      return new APIUserAbortError(void 0, { cause: userSignal.reason });
    if (timedOut)
      return new APITimeoutError(`Request timed out after ${timeout} ms.`, { cause });
    const detail = cause instanceof Error ? describeCause(cause) : String(cause);
    return new APIConnectionError(`Connection error: ${detail}`, { cause });
  }
};
function isRetryableStatus(status) {
  return status === 408 || status === 429 || status >= 500;
}
async function readErrorBody(response) {
  const text = await response.text();
  if (!text)
    return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
function describeCause(error) {
  const inner = error.cause;
  if (inner instanceof Error && inner.message)
    return `${error.message} (${inner.message})`;
  return error.message;
}

// dist/webhooks.js
var WebhookVerificationError = class extends Error {
  constructor(message) {
    super(message);
    this.name = "WebhookVerificationError";
  }
};
function header(headers, name) {
  if (typeof headers.get === "function") {
    const value = headers.get(name);
    if (value !== null)
      return value;
  } else {
    for (const [key, value] of Object.entries(headers)) {
      if (key.toLowerCase() === name && value !== void 0)
        return Array.isArray(value) ? value[0] : value;
    }
  }
  throw new WebhookVerificationError(`missing header ${name}`);
}
function sameText(a, b) {
  if (a.length !== b.length)
    return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++)
    diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
async function verifyWebhook(payload, headers, secret, options = {}) {
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  const sentAt = Number(timestamp);
  if (!Number.isInteger(sentAt))
    throw new WebhookVerificationError("webhook-timestamp is not an integer");
  const now = options.now ?? Date.now() / 1e3;
  if (Math.abs(now - sentAt) > (options.tolerance ?? 300)) {
    throw new WebhookVerificationError("webhook-timestamp is outside the tolerance");
  }
  let key;
  try {
    key = decodeBase64(secret.startsWith("whsec_") ? secret.slice(6) : secret);
  } catch {
    throw new WebhookVerificationError("the secret is not whsec_<base64>");
  }
  const body = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  const prefix = new TextEncoder().encode(`${id}.${sentAt}.`);
  const signed = new Uint8Array(prefix.length + body.length);
  signed.set(prefix);
  signed.set(body, prefix.length);
  const cryptoKey = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const expected = encodeBase64(await crypto.subtle.sign("HMAC", cryptoKey, signed));
  for (const candidate of signatures.split(" ")) {
    const [version, value] = candidate.split(",", 2);
    if (version === "v1" && value !== void 0 && sameText(value, expected)) {
      return JSON.parse(new TextDecoder().decode(body));
    }
  }
  throw new WebhookVerificationError("no signature matches");
}
export {
  APIConnectionError,
  APIError,
  APITimeoutError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  ConflictError,
  InternalServerError,
  JobFailedError,
  Kinetoscope,
  KinetoscopeError,
  Models,
  NotFoundError,
  Page,
  PagePromise,
  PayloadTooLargeError,
  PermissionDeniedError,
  Preview,
  RateLimitError,
  ServiceUnavailableError,
  TERMINAL_STATUSES,
  UnprocessableEntityError,
  UnsupportedMediaTypeError,
  VERSION,
  VideoContent,
  Videos,
  WaitTimeoutError,
  WebhookVerificationError,
  decodeBase64,
  Kinetoscope as default,
  isTerminal,
  parseSSE,
  toFormData,
  verifyWebhook
};
