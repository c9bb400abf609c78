// Edit a region: drag a box over the result, and only that region is generated again (an exact
// edit of the job on show: every token wholly outside the box stays as it was).
import { el, setStatus, state } from './state.js';

/** Whether a completed job can be edited: a job of a model that inpaints, of any length (the server says the rest). */
export function editable(job) {
  const model = state.models.find((m) => m.id === job.model);
  return Boolean(model && job.status === 'completed' && model.tasks.includes('inpainting'));
}

export function setEditMode(on) {
  el.editRegion.setAttribute('aria-pressed', String(on));
  el.stage.classList.toggle('editing', on);
  el.editBox.hidden = true;
  if (on) setStatus('Drag a box over the video: that region is generated again, the rest kept exactly.');
}

let drag = null; // { x, y } where the pointer went down, relative (0..1)
const hooks = { runJob: null }; // installEditing's

function relativePoint(event) {
  const r = el.stage.getBoundingClientRect();
  const clamp = (v) => Math.min(Math.max(v, 0), 1);
  return { x: clamp((event.clientX - r.left) / r.width), y: clamp((event.clientY - r.top) / r.height) };
}

/** The box between the drag's start and `p`, [x0, y0, x1, y1] relative. */
function dragBox(p) {
  return [Math.min(drag.x, p.x), Math.min(drag.y, p.y), Math.max(drag.x, p.x), Math.max(drag.y, p.y)];
}

function drawEditBox([x0, y0, x1, y1]) {
  Object.assign(el.editBox.style, { left: `${x0 * 100}%`, top: `${y0 * 100}%`,
    width: `${(x1 - x0) * 100}%`, height: `${(y1 - y0) * 100}%` });
  el.editBox.hidden = false;
}

function onPointerDown(event) {
  if (!el.stage.classList.contains('editing') || state.running) return;
  el.stage.setPointerCapture(event.pointerId);
  drag = relativePoint(event);
  drawEditBox(dragBox(drag));
}

function onPointerMove(event) {
  if (drag) drawEditBox(dragBox(relativePoint(event)));
}

async function onPointerUp(event) {
  if (!drag) return;
  const box = dragBox(relativePoint(event)).map((v) => Math.round(v * 1000) / 1000);
  drag = null;
  if (box[2] - box[0] < 0.05 || box[3] - box[1] < 0.05) {
    el.editBox.hidden = true;
    setStatus('Drag a larger box (a click is not a region).', 'error');
    return;
  }
  const source = state.shown;
  setEditMode(false);
  drawEditBox(box); // stays while the region is generated
  const model = state.models.find((m) => m.id === source.model);
  const maskgit = model.samplers.includes('maskgit');
  const params = { model: source.model, mask: box, sampler: maskgit ? { method: 'maskgit' } : undefined };
  if (el.previews.checked) params.previews = true;
  if (el.seed.value !== '') params.seed = Number(el.seed.value);
  await hooks.runJob((signal) => state.client.videos.edit(source.id, params, { signal }));
  el.editBox.hidden = true;
}

/** The drag over the stage, and Escape to leave edit mode; `runJob` (follow.js) runs the edit. */
export function installEditing(runJob) {
  hooks.runJob = runJob;
  el.stage.addEventListener('pointerdown', onPointerDown);
  el.stage.addEventListener('pointermove', onPointerMove);
  el.stage.addEventListener('pointerup', onPointerUp);
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && el.stage.classList.contains('editing')) {
      drag = null;
      setEditMode(false);
      setStatus('Ready.');
    }
  });
}
