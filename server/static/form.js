// The form: the models and the fields that depend on them (task, class, sizes, the sampler's
// settings), the previous results an input can be, and the create body the fields make.
import { $, CLASS_TASKS, FRAME_TASKS, SPATIAL_TASKS, describe, el, fillSelect, setStatus, state } from './state.js';

export async function loadModels() {
  setStatus('Loading models…');
  try {
    state.models = await state.client.models.list();
  } catch (err) {
    state.models = [];
    fillSelect(el.model, [], null);
    setStatus(describe(err), 'error');
    return;
  }
  fillSelect(el.model, state.models.map((m) => [m.id, `${m.id} (${m.backend})`]), state.models[0]?.id);
  onModelChange();
  setStatus('Ready.');
  await loadPrevious();
}

function currentModel() {
  return state.models.find((m) => m.id === el.model.value) ?? state.models[0];
}

export function onModelChange() {
  const model = currentModel();
  if (!model) return;
  const task = model.tasks.includes(el.task.value) ? el.task.value : model.tasks[0];
  fillSelect(el.task, model.tasks.map((t) => [t, t.replaceAll('_', ' ')]), task);
  fillSelect(el.size, model.sizes.map((s) => [s, s]), model.sizes[0]);
  el.numFrames.value = model.window_frames;
  el.numFrames.max = model.max_num_frames;
  el.conditionFrames.value = model.default_condition_frames;
  el.conditionFrames.max = model.window_frames - 1;
  onTaskChange();
}

export function onTaskChange() {
  const model = currentModel();
  const task = el.task.value;
  const classRequired = CLASS_TASKS.includes(task);
  const classes = model.classes.map((name, i) => [i, `${i}: ${name}`]);
  // The class is required by the class-conditional tasks and optional (default none) elsewhere.
  const keep = classRequired === (el.classLabel.dataset.required === 'true') ? el.classLabel.value : '';
  fillSelect(el.classLabel, classRequired ? classes : [['', '(none)'], ...classes], keep || (classRequired ? 0 : ''));
  el.classLabel.dataset.required = String(classRequired);
  el.inputRow.hidden = task === 'class_conditional';
  el.conditionRow.hidden = !FRAME_TASKS.includes(task);
  el.maskRow.hidden = !SPATIAL_TASKS.includes(task);
  el.boxRow.hidden = el.maskPreset.value !== 'box';
  // The sampler the model recommends for this task (GET /v1/models, sampler_defaults).
  const recommended = model.sampler_defaults?.[task]?.method ?? model.samplers[0];
  fillSelect(el.sampler, model.samplers.map((s) => [s, s === recommended ? `${s} (recommended)` : s]), recommended);
  el.samplerNote.textContent = `${model.id} recommends ${recommended} for ${task.replaceAll('_', ' ')}.`;
  onSamplerChange();
}

// The fields start from the model's settings for the task and the chosen method.
export function onSamplerChange() {
  const model = currentModel();
  const settings = model.sampler_defaults?.[el.task.value]?.methods?.[el.sampler.value];
  if (!settings) return;
  el.steps.value = settings.steps;
  el.temperature.value = settings.temperature;
  el.guidance.value = settings.guidance_scale;
  el.steps.disabled = el.sampler.value !== 'maskgit';  // the autoregressive sampler takes one step per token
}

export function onInputSourceChange() {
  const previous = document.querySelector('input[name="input-source"]:checked').value === 'previous';
  el.inputFile.hidden = previous;
  el.inputPrevious.hidden = !previous;
}

export async function loadPrevious() {
  const done = [];
  try {
    const page = await state.client.videos.list({ limit: 50 });
    done.push(...page.data.filter((j) => j.status === 'completed'));
  } catch {
    // listing is a convenience; the form works without it
  }
  fillSelect(el.inputPrevious, done.map((j) => [j.id, `${j.id} · ${j.task.replaceAll('_', ' ')} · ${j.size}`]), done[0]?.id);
}

export function readParams() {
  const task = el.task.value;
  const params = { model: el.model.value, task, size: el.size.value, num_frames: Number(el.numFrames.value) };
  if (el.classLabel.value !== '') params.class_label = Number(el.classLabel.value);
  if (el.seed.value !== '') params.seed = Number(el.seed.value);
  params.sampler = { method: el.sampler.value };
  if (el.sampler.value === 'maskgit' && el.steps.value !== '') params.sampler.steps = Number(el.steps.value);
  // An empty field means the server's default (as for the seed).
  if (el.temperature.value !== '') params.sampler.temperature = Number(el.temperature.value);
  if (el.guidance.value !== '') params.sampler.guidance_scale = Number(el.guidance.value);
  if (el.previews.checked) params.previews = true; // MaskGIT: every step; autoregressive: every few tokens
  if (FRAME_TASKS.includes(task)) params.condition_frames = Number(el.conditionFrames.value);
  if (SPATIAL_TASKS.includes(task)) {
    params.mask = el.maskPreset.value === 'box'
      ? { box: ['x0', 'y0', 'x1', 'y1'].map((k) => Number($(`box-${k}`).value)) }
      : { preset: el.maskPreset.value };
  }
  if (task !== 'class_conditional') {
    const previous = document.querySelector('input[name="input-source"]:checked').value === 'previous';
    if (previous) {
      if (!el.inputPrevious.value) throw new Error('Choose a previous result, or upload a video.');
      params.input_video_id = el.inputPrevious.value;
    } else {
      const file = el.inputFile.files?.[0];
      if (!file) throw new Error('This task needs an input video: upload one, or use a previous result.');
      params.input_video = file; // a File: the SDK sends multipart/form-data
    }
  }
  return params;
}

