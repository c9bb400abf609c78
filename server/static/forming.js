// Previews: the clip forming, step by step. The latest preview plays frame by frame in the player
// until the video is there; the strip below looks back at every step.
import { drawHeat } from './heat.js';
import { el, forming, state, steps } from './state.js';

/** A new job: clears the last one's previews and gives the stage the clip's shape. */
export function resetResult(job) {
  steps.length = 0;
  state.confidence = null;
  el.history.hidden = true;
  el.step.disabled = true;
  el.showConfidence.disabled = true;
  const [w, h] = job.size.split('x').map(Number);
  el.stage.style.aspectRatio = `${w} / ${h}`;
  forming.fps = job.fps || 8;
  forming.windowFrames = state.models.find((m) => m.id === job.model)?.window_frames ?? 16;
  drawHeat();
}

export function showPreview(preview) {
  steps.push(preview);
  el.history.hidden = false;
  el.step.max = String(steps.length);
  el.step.value = String(steps.length);
  showStep(steps.length - 1);
  el.showConfidence.disabled = preview.confidence === null;
  const image = new Image();
  image.onload = () => {
    if (state.running?.jobId !== preview.id) return; // a late image of a job already shown
    forming.image = image;
    startForming();
  };
  image.src = preview.image;
}

/** The strip and caption of one step (0-based index into `steps`). */
export function showStep(index) {
  const preview = steps[index];
  if (!preview) return;
  el.strip.src = preview.image;
  el.stepCaption.textContent = `Step ${preview.step} of ${preview.steps} · ${Math.round(preview.decided * 100)}% decided`;
}

/** Plays the latest preview's frames in the player, at the job's frame rate, until the video is there. */
function startForming() {
  if (forming.timer !== null) return;
  el.video.hidden = true;
  el.forming.hidden = false;
  const tick = () => {
    const image = forming.image;
    if (!image) return;
    const [fw, fh] = frameSize(image);
    const count = Math.max(1, Math.round(image.naturalWidth / fw));
    forming.frame = (forming.frame + 1) % count;
    el.forming.width = fw;
    el.forming.height = fh;
    el.forming.getContext('2d').drawImage(image, forming.frame * fw, 0, fw, fh, 0, 0, fw, fh);
    drawHeat();
  };
  tick();
  forming.timer = setInterval(tick, 1000 / forming.fps);
}

export function stopForming() {
  clearInterval(forming.timer);
  forming.timer = null;
  forming.image = null;
  el.forming.hidden = true;
}

/** One frame's size in a preview strip: the strip's height, and the width the stage's shape gives it. */
function frameSize(image) {
  const [w, h] = (el.stage.style.aspectRatio || '1 / 1').split('/').map(Number);
  return [Math.round(image.naturalHeight * (w / h)), image.naturalHeight];
}
