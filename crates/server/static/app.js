// The live parts of Salve's pages: a running job's log and a running pipeline's state. The
// pages work without this; it only adds what happens after they were drawn.
"use strict";

function text(s) {
  // Colour codes are dropped in live lines; a reload draws them.
  return s.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "");
}

function liveLog(box) {
  const id = box.dataset.liveJob;
  const list = document.getElementById("live-lines");
  if (!id || !list || !window.EventSource) return;
  const source = new EventSource("/api/v1/jobs/" + encodeURIComponent(id) + "/logs/stream?from=" + box.dataset.from);
  source.addEventListener("line", (e) => {
    // The stream counts from 0; people (and the page) from 1.
    const data = { number: Number(e.lastEventId) + 1, text: e.data };
    const li = document.createElement("li");
    li.id = "L" + data.number;
    const n = document.createElement("a");
    n.className = "ln";
    n.href = "#L" + data.number;
    n.textContent = data.number;
    const t = document.createElement("span");
    t.className = "t";
    t.textContent = text(data.text);
    li.append(n, t);
    list.append(li);
  });
  source.addEventListener("done", (e) => {
    source.close();
    const status = document.getElementById("job-status");
    if (status) {
      let result = "done";
      try { result = JSON.parse(e.data).result || result; } catch (_) {}
      status.textContent = (result === "passed" ? "✓ " : "✗ ") + result + " (reload for the report)";
    }
  });
}

function livePipeline(el) {
  const id = el.dataset.livePipeline;
  if (!id || !window.EventSource) return;
  const source = new EventSource("/api/v1/events?pipeline_id=" + encodeURIComponent(id));
  // Redraw when a job starts or ends (at most twice a second), and once the pipeline is done.
  let pending = null;
  const redraw = () => { if (!pending) pending = setTimeout(() => window.location.reload(), 500); };
  ["job_started", "job_finished", "block_finished"].forEach((name) => source.addEventListener(name, redraw));
  source.addEventListener("pipeline_finished", () => { source.close(); redraw(); });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live-job]").forEach(liveLog);
  document.querySelectorAll("[data-live-pipeline]").forEach(livePipeline);
});
