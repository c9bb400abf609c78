// What every part of the playground shares: the page's elements, the SDK client and the models,
// the job running and the one on show, its previews, and the status line.
import { AuthenticationError, JobFailedError, Kinetoscope, KinetoscopeError } from './vendor/kinetoscope-client.js';

export const CLASS_TASKS = ['class_conditional', 'class_conditional_frame_prediction'];
export const FRAME_TASKS = ['class_conditional_frame_prediction', 'frame_prediction'];
export const SPATIAL_TASKS = ['inpainting', 'outpainting'];

export const $ = (id) => document.getElementById(id);
export const el = {
  form: $('form'), apiKey: $('api-key'), model: $('model'), task: $('task'), classLabel: $('class-label'),
  classRow: $('class-row'), inputRow: $('input-row'), inputFile: $('input-file'), inputPrevious: $('input-previous'),
  conditionRow: $('condition-row'), conditionFrames: $('condition-frames'), maskRow: $('mask-row'),
  maskPreset: $('mask-preset'), boxRow: $('box-row'), size: $('size'), numFrames: $('num-frames'), seed: $('seed'),
  sampler: $('sampler'), samplerNote: $('sampler-note'), steps: $('steps'), temperature: $('temperature'), guidance: $('guidance'), generate: $('generate'), cancel: $('cancel'), status: $('status'),
  progress: $('progress'), video: $('result'), download: $('download'), jobId: $('job-id'), jobJson: $('job-json'),
  previews: $('previews'), stage: $('stage'), forming: $('forming'), heat: $('heat'), editBox: $('edit-box'),
  showConfidence: $('show-confidence'), editRegion: $('edit-region'), history: $('history'), strip: $('preview-strip'),
  stepCaption: $('preview-caption'), step: $('preview-step'),
};

export const state = {
  client: null, // the SDK client (app.js makes it, and again when the API key changes)
  models: [],
  running: null, // { controller, jobId } while a generation is under way
  objectURL: null,
  shown: null, // the completed job on show: the one an edit starts from
  confidence: null, // the final confidence map of `shown` (heat.js loadConfidence), or null
};
export const steps = []; // the running (or shown) job's previews, in order
export const forming = { image: null, frame: 0, timer: null, fps: 8, windowFrames: 16 }; // the latest preview, played frame by frame

export function makeClient() {
  return new Kinetoscope({ baseURL: location.origin, apiKey: el.apiKey.value.trim() || null, maxRetries: 2 });
}

export function setStatus(text, kind = '') {
  el.status.textContent = text;
  el.status.className = kind;
}

export function describe(err) {
  if (err instanceof JobFailedError) return `Job ${err.job.status}: ${err.job.error?.message ?? err.job.status}`;
  if (err instanceof AuthenticationError) return 'The server needs an API key (enter it above).';
  if (err instanceof KinetoscopeError) return err.message;
  return String(err);
}

export function fillSelect(select, items, selected) {
  select.replaceChildren(...items.map(([value, label]) => new Option(label, value, false, String(value) === String(selected))));
}
