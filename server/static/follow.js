// Following one job: create it, follow its server-sent events (previews too; polling if the
// stream cannot be used), then show the result, its download and its confidence map.
import { APIUserAbortError, JobFailedError, Preview } from './vendor/kinetoscope-client.js';
import { editable } from './edit.js';
import { loadPrevious } from './form.js';
import { resetResult, showPreview, stopForming } from './forming.js';
import { drawHeat, loadConfidence } from './heat.js';
import { describe, el, setStatus, state } from './state.js';

function showJob(job) {
  el.jobId.textContent = job.id;
  el.jobJson.textContent = JSON.stringify(job, null, 2);
  el.progress.hidden = false;
  el.progress.value = job.progress;
  const where = job.status === 'queued' && job.queue_position !== null ? ` (position ${job.queue_position + 1} in the queue)` : '';
  setStatus(`${job.status.replace('_', ' ')} ${job.progress}%${where}`);
}

/** Follows the job over server-sent events (its previews too); falls back to polling if the stream cannot be used. */
async function follow(job, signal) {
  let last = job;
  try {
    for await (const update of state.client.videos.streamEvents(job.id, { signal, previews: job.request.previews })) {
      if (update instanceof Preview) {
        showPreview(update);
        continue;
      }
      last = update;
      showJob(update);
    }
  } catch (err) {
    if (err instanceof APIUserAbortError) throw err;
    last = await state.client.videos.poll(job.id, { signal, onProgress: showJob }).catch((e) => {
      if (e instanceof JobFailedError) return e.job;
      throw e;
    });
  }
  if (last.status !== 'completed') throw new JobFailedError(last);
  return last;
}

async function show(job, signal) {
  setStatus('Downloading…');
  const content = await state.client.videos.downloadContent(job.id, { signal });
  state.confidence = await loadConfidence(job, signal);
  stopForming();
  if (state.objectURL) URL.revokeObjectURL(state.objectURL);
  state.objectURL = URL.createObjectURL(content.blob());
  el.video.hidden = false;
  el.video.src = state.objectURL;
  el.download.href = state.objectURL;
  el.download.download = `${job.id}.mp4`;
  el.download.hidden = false;
  state.shown = job;
  el.showConfidence.disabled = state.confidence === null;
  el.editRegion.disabled = !editable(job);
  el.step.disabled = false; // the steps can be looked back at now
  drawHeat();
  const edited = job.request.edit_from ? ` Edited from ${job.request.edit_from}.` : '';
  setStatus(`Completed: ${job.num_frames} frames, ${job.size}, ${job.fps} fps, seed ${job.seed}.${edited}`, 'ok');
}

/** Runs one job from `start(signal)` (which creates it) to its result on show. */
export async function runJob(start) {
  const controller = new AbortController();
  state.running = { controller, jobId: null };
  el.generate.disabled = true;
  el.cancel.disabled = false;
  el.editRegion.disabled = true;
  setStatus('Submitting…');
  try {
    const job = await start(controller.signal);
    state.running.jobId = job.id;
    resetResult(job);
    showJob(job);
    const done = await follow(job, controller.signal);
    await show(done, controller.signal);
    await loadPrevious();
  } catch (err) {
    setStatus(describe(err), 'error');
    if (state.shown) el.editRegion.disabled = !editable(state.shown);
  } finally {
    state.running = null;
    el.generate.disabled = false;
    el.cancel.disabled = true;
  }
}
