/// The page at `/`: plain HTML and JavaScript served by the binary (no build chain). It submits jobs
/// by uploading files with a generated pipeline, lists jobs with live progress (Server-Sent Events),
/// and shows a job's results: overlays, top-k labels, masks and overlay videos.
enum WebPage {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sluice</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f4f6f9; }
  header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 16px; align-items: center; }
  header h1 { font-size: 18px; margin: 0; }
  header input#token { width: 260px; }
  main { display: grid; grid-template-columns: 360px 1fr; gap: 16px; padding: 16px 20px; }
  section { background: #fff; border-radius: 8px; padding: 14px 16px; box-shadow: 0 1px 3px rgba(0,0,0,.08); }
  h2 { font-size: 15px; margin: 0 0 10px; }
  label { display: block; margin: 8px 0 2px; font-weight: 600; }
  select, input[type=number], input[type=text], input[type=password] { width: 100%; box-sizing: border-box; padding: 4px; }
  button { margin-top: 12px; padding: 6px 14px; background: #2f6fec; color: #fff; border: 0; border-radius: 4px; cursor: pointer; }
  table { width: 100%; border-collapse: collapse; }
  td, th { text-align: left; padding: 5px 6px; border-bottom: 1px solid #e5e8ee; }
  tr.job { cursor: pointer; } tr.job:hover { background: #f0f4ff; } tr.selected { background: #e3ebff; }
  progress { width: 140px; }
  .state-done { color: #16803c; } .state-cancelled, .state-blocked { color: #b3261e; } .state-running { color: #2f6fec; }
  #results { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 12px; margin-top: 10px; }
  .card { border: 1px solid #e5e8ee; border-radius: 6px; padding: 8px; background: #fafbfd; }
  .card img, .card video { width: 100%; border-radius: 4px; background: #ddd; }
  .card .name { font-weight: 600; word-break: break-all; margin: 4px 0; }
  .card ol { margin: 4px 0 0 18px; padding: 0; } .error { color: #b3261e; }
  #message { margin-top: 8px; min-height: 1.4em; }
</style>
</head>
<body>
<header><h1>Sluice</h1><span>gated vision backbones over images and videos</span>
  <span style="margin-left:auto">token</span><input id="token" type="password" placeholder="bearer token (if the server needs one)"></header>
<main>
<section>
  <h2>New job</h2>
  <form id="submit">
    <label for="files">Images or videos</label>
    <input id="files" name="files" type="file" multiple accept="image/jpeg,image/png,video/*">
    <label for="model">Model</label>
    <select id="model"></select>
    <label for="topk">Top-k</label>
    <input id="topk" type="number" value="5" min="1" max="20">
    <label for="fps">Video frames per second</label>
    <input id="fps" type="number" value="2" min="0.1" step="0.1">
    <label><input id="overlays" type="checkbox" checked> draw overlays</label>
    <button id="go" type="submit">Submit</button>
  </form>
  <div id="message"></div>
</section>
<section>
  <h2>Jobs</h2>
  <table><thead><tr><th>name</th><th>state</th><th>progress</th><th>items</th></tr></thead><tbody id="jobs"></tbody></table>
  <h2 id="results-title" style="margin-top:18px">Results</h2>
  <div id="results"></div>
</section>
</main>
<script>
const $ = (id) => document.getElementById(id);
$("token").value = localStorage.getItem("sluice-token") || "";
$("token").addEventListener("change", () => { localStorage.setItem("sluice-token", $("token").value); refresh(); });
const auth = () => $("token").value ? { Authorization: "Bearer " + $("token").value } : {};
const withToken = (url) => $("token").value ? url + (url.includes("?") ? "&" : "?") + "access_token=" + encodeURIComponent($("token").value) : url;
const say = (text, bad) => { $("message").textContent = text; $("message").className = bad ? "error" : ""; };
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
let selected = null, resultStream = null;
const streams = {};

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...auth(), ...(options.headers || {}) } });
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new Error(body?.error?.message || response.statusText);
  return body;
}

async function loadModels() {
  try {
    const { models } = await api("/v1/models");
    const usable = models.filter((m) => m.imported && ["image-classification", "semantic-segmentation", "video-classification"].includes(m.task));
    $("model").innerHTML = usable.map((m) => `<option value="${esc(m.name)}" data-task="${esc(m.task)}">${esc(m.name)} (${esc(m.task)})</option>`).join("");
  } catch (e) { say(e.message, true); }
}

$("submit").addEventListener("submit", async (event) => {
  event.preventDefault();
  const files = [...$("files").files];
  if (!files.length) { say("choose at least one file", true); return; }
  const model = $("model").value, task = $("model").selectedOptions[0]?.dataset.task;
  const videos = files.filter((f) => f.type.startsWith("video/")), images = files.filter((f) => !f.type.startsWith("video/"));
  const groups = task === "video-classification" ? [["video", videos]] : [["images", images], ["video", videos]];
  for (const [kind, group] of groups) {
    if (!group.length) continue;
    const sample = kind === "video" ? `, sample: { fps: ${Number($("fps").value) || 2} }` : "";
    const sink = $("overlays").checked ? "sink: { overlays: overlays" + (task === "semantic-segmentation" ? ", masks: masks" : "") + " }\n" : "";
    const pipeline = `name: ${kind === "video" ? "videos" : "images"}-${model}\nsource: { ${kind}: .${sample} }\n` +
      `stages:\n  - model: ${model}\n  - topk: ${Number($("topk").value) || 5}\n` + sink;
    const form = new FormData();
    form.append("pipeline", pipeline);
    for (const file of group) form.append("files", file, file.name);
    try {
      say(`uploading ${group.length} file(s)…`);
      const { job, created } = await api("/v1/jobs", { method: "POST", body: form });
      say(`${created ? "submitted" : "already known:"} job ${job.id}`);
      await refresh();
      select(job.id);
    } catch (e) { say(e.message, true); }
  }
});

function row(job) {
  const finished = job.done + job.failed;
  return `<tr class="job${job.id === selected ? " selected" : ""}" data-id="${job.id}" id="job-${job.id}">` +
    `<td>${esc(job.name)}<br><small>${job.id}</small></td><td class="state-${job.state}">${job.state}</td>` +
    `<td><progress max="${job.total}" value="${finished}"></progress></td>` +
    `<td>${finished}/${job.total}${job.failed ? ` (${job.failed} failed)` : ""}</td></tr>`;
}

async function refresh() {
  try {
    const { jobs } = await api("/v1/jobs");
    $("jobs").innerHTML = jobs.map(row).join("");
    for (const job of jobs) if (!["done", "cancelled", "blocked"].includes(job.state)) follow(job.id);
  } catch (e) { say(e.message, true); }
}

function follow(id) {
  if (streams[id]) return;
  const source = new EventSource(withToken(`/v1/jobs/${id}/events`));
  streams[id] = source;
  const update = (event) => {
    const job = JSON.parse(event.data);
    const old = $(`job-${id}`);
    if (old) old.outerHTML = row(job);
  };
  source.addEventListener("progress", update);
  source.addEventListener("end", (event) => { update(event); source.close(); delete streams[id]; });
}

$("jobs").addEventListener("click", (event) => {
  const tr = event.target.closest("tr.job");
  if (tr) select(tr.dataset.id);
});

function select(id) {
  selected = id;
  document.querySelectorAll("tr.job").forEach((tr) => tr.classList.toggle("selected", tr.dataset.id === id));
  $("results-title").textContent = `Results of ${id}`;
  $("results").innerHTML = "";
  if (resultStream) resultStream.close();
  resultStream = new EventSource(withToken(`/v1/jobs/${id}/events`));
  resultStream.addEventListener("item", (event) => $("results").insertAdjacentHTML("beforeend", card(id, JSON.parse(event.data))));
  resultStream.addEventListener("end", () => resultStream.close());
}

function card(job, item) {
  const name = item.source.split("/").pop();
  const media = item.artifacts.map((path) => {
    const url = withToken(`/v1/jobs/${job}/artifacts/${path.split("/").map(encodeURIComponent).join("/")}`);
    return path.endsWith(".mp4") ? `<video controls muted src="${url}"></video>` : `<img alt="${esc(path)}" src="${url}">`;
  }).join("");
  const last = [...item.records].reverse().find((r) => r.top_k || r.mask) || item.records[0] || {};
  const top = (last.top_k || []).map((p) => `<li>${esc(p.label)} <small>${(p.score * 100).toFixed(1)}%</small></li>`).join("");
  const mask = last.mask ? `<ol>${last.mask.classes.slice(0, 5).map((c) => `<li>${esc(c.label)} <small>${(c.fraction * 100).toFixed(1)}%</small></li>`).join("")}</ol>` : "";
  const frames = item.records.length > 1 ? `<small>${item.records.length} records; last shown</small>` : "";
  const error = item.error ? `<div class="error">${esc(item.error)}</div>` : "";
  return `<div class="card" data-position="${item.position}">${media}<div class="name">${esc(name)}</div>${frames}${error}${top ? `<ol>${top}</ol>` : ""}${mask}</div>`;
}

loadModels();
refresh();
setInterval(refresh, 5000);
</script>
</body>
</html>
"""#
}
