// The confidence overlay: a heat map of the sampler's confidence per token, over the latent frame
// of the frame on show (the forming clip's, or the video's, window by window).
import { NotFoundError } from './vendor/kinetoscope-client.js';
import { el, forming, state, steps } from './state.js';

/** The final confidence map of a job (either sampler), every window of it, else null (none kept). */
export async function loadConfidence(job, signal) {
  const model = state.models.find((m) => m.id === job.model);
  if (!model) return null;
  try {
    const doc = (await state.client.videos.downloadContent(job.id, { variant: 'confidence', signal })).json();
    const plan = planWindows(job.num_frames, model.window_frames, model.default_condition_frames);
    return { grid: doc.token_grid, windows: doc.windows, plan, windowFrames: model.window_frames };
  } catch (err) {
    if (err instanceof NotFoundError) return null;
    throw err;
  }
}

/** Red where the sampler was unsure, through yellow, to a faint blue where it was sure (c in 0..1). */
function heatColour(c) {
  const stops = [[230, 30, 30], [250, 210, 0], [30, 160, 230]];
  const x = Math.min(Math.max(c, 0), 1) * 2;
  const [a, b] = x < 1 ? [stops[0], stops[1]] : [stops[1], stops[2]];
  const f = x < 1 ? x : x - 1;
  return [...a.map((v, i) => Math.round(v + (b[i] - v) * f)), Math.round(20 + 180 * (1 - c))];
}

/** The windows a clip of `numFrames` is made in, as server/conditioning.py plans them: each
 * { start, length }; a new one starts `condition` frames before the last one's end, the final one
 * ends on the clip's last frame. */
export function planWindows(numFrames, window, condition) {
  if (numFrames <= window) return [{ start: 0, length: numFrames }];
  const windows = [{ start: 0, length: window }];
  for (let end = window; end < numFrames; end = windows.at(-1).start + window) {
    windows.push({ start: Math.min(end - condition, numFrames - window), length: window });
  }
  return windows;
}

/** The map to draw for the frame on show: the latest preview's (the window forming) or, under
 * the video, the final map of the window that made that frame (the first that holds it). Its
 * frame within that window, and the window's length in frames, say which latent frame it is. */
function heatOnShow() {
  if (!el.forming.hidden && steps.length) {
    const { token_grid: grid, confidence: values } = steps.at(-1);
    return { grid, values, frame: forming.image ? forming.frame : 0, windowFrames: forming.windowFrames };
  }
  if (!state.confidence) return null;
  const frames = state.shown?.num_frames ?? 1;
  const frame = Math.min(frames - 1, Math.floor(el.video.currentTime * (state.shown?.fps ?? 8)));
  const found = state.confidence.plan.findIndex((win) => frame < win.start + win.length);
  const index = Math.min(Math.max(found, 0), state.confidence.windows.length - 1);
  const start = state.confidence.plan[index]?.start ?? 0;
  return { grid: state.confidence.grid, values: state.confidence.windows[index], frame: frame - start,
    windowFrames: state.confidence.windowFrames };
}

/** Draws the heat map of the frame on show (its latent frame's tokens), or hides it. */
export function drawHeat() {
  const map = heatOnShow();
  const on = el.showConfidence.checked && !el.showConfidence.disabled && map && map.grid && map.values;
  el.heat.hidden = !on;
  if (!on) return;
  const [t, h, w] = map.grid;
  const slice = Math.min(t - 1, Math.floor((map.frame * t) / map.windowFrames));
  const image = new ImageData(w, h);
  for (let i = 0; i < h * w; i++) image.data.set(heatColour(map.values[slice * h * w + i] / 255), i * 4);
  el.heat.width = w;
  el.heat.height = h;
  el.heat.getContext('2d').putImageData(image, 0, 0);
}

/** While the video plays under the overlay, keep the heat map on its latent frame. */
export function followVideoFrames() {
  if (!el.heat.hidden && !el.video.hidden) drawHeat();
  requestAnimationFrame(followVideoFrames);
}
