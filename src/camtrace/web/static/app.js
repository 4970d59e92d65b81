// camtrace's page: uploads, examinations, the block map viewer, spoofing and batches.
// Plain JavaScript, no build step; the server does the work (camtrace's API), this shows it.
"use strict";

const setup = JSON.parse(document.getElementById("setup").textContent);
const detectorSelect = document.getElementById("detector");
const photos = new Map(); // photo id -> {card, exam}

// -- small helpers ---------------------------------------------------------------------------

function message(text) {
  const box = document.getElementById("messages");
  const line = document.createElement("p");
  line.className = "error";
  line.textContent = text;
  const close = document.createElement("button");
  close.type = "button";
  close.textContent = "\u00d7";
  close.title = "dismiss";
  close.addEventListener("click", () => line.remove());
  line.append(" ", close);
  box.prepend(line);
  while (box.children.length > 8) box.lastChild.remove();
}

async function api(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (e) {
    throw new Error(`the server does not answer (${e.message}); is camtrace serve running?`);
  }
  const text = await response.text();
  let body = null;
  try { body = JSON.parse(text); } catch (e) { body = null; }
  if (!response.ok) {
    const said = body && body.error ? body.error : text.split("\n")[0];
    throw new Error(said || `${response.status} ${response.statusText}`);
  }
  return body;
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

async function follow(job, onProgress) {
  // Poll a background job until it is done; its result, or an Error with its one line.
  for (;;) {
    if (onProgress) onProgress(job);
    if (job.state === "done") return job.result;
    if (job.state === "failed") throw new Error(job.error);
    await sleep(300);
    job = await api(`/api/jobs/${job.id}`);
  }
}

function form(fields) {
  const data = new FormData();
  for (const [key, value] of Object.entries(fields)) data.append(key, value);
  return data;
}

const detector = () => detectorSelect.value;
const detectorInfo = () => setup.detectors.find((d) => d.key === detector());
const percent = (x, digits = 0) => `${(100 * x).toFixed(digits)}%`;
const role = (card, name) => card.querySelector(`[data-role="${name}"]`);

// -- detector choice ---------------------------------------------------------------------------

function showCard() {
  for (const table of document.querySelectorAll("#card table.card")) {
    table.hidden = table.dataset.key !== detector();
  }
}

detectorSelect.addEventListener("change", () => {
  showCard();
  for (const id of photos.keys()) examine(id);
});
showCard();

// -- uploads -----------------------------------------------------------------------------------

function tooLarge(files) {
  const total = files.reduce((sum, f) => sum + f.size, 0);
  if (total <= setup.max_bytes) return false;
  const mb = (setup.max_bytes / 2 ** 20).toFixed(0);
  message(`${files.length} file(s) of ${(total / 2 ** 20).toFixed(0)} MB: over the server's limit of ${mb} MB; send fewer at a time`);
  return true;
}

async function upload(fileList) {
  const files = Array.from(fileList);
  if (!files.length || tooLarge(files)) return;
  const data = new FormData();
  for (const f of files) data.append("files", f, f.name);
  let answers;
  try {
    answers = await api("/api/photos", { method: "POST", body: data });
  } catch (e) {
    message(e.message);
    return;
  }
  for (const answer of answers) {
    if (answer.error) message(answer.error);
    else addPhoto(answer);
  }
}

const input = document.getElementById("files");
input.addEventListener("change", () => { upload(input.files); input.value = ""; });
const drop = document.getElementById("drop");
for (const kind of ["dragenter", "dragover"]) {
  drop.addEventListener(kind, (e) => { e.preventDefault(); drop.classList.add("over"); });
}
for (const kind of ["dragleave", "drop"]) {
  drop.addEventListener(kind, () => drop.classList.remove("over"));
}
drop.addEventListener("drop", (e) => { e.preventDefault(); upload(e.dataTransfer.files); });

// -- one photo ---------------------------------------------------------------------------------

function addPhoto(photo) {
  const card = document.getElementById("photo-template").content.firstElementChild.cloneNode(true);
  card.dataset.photo = photo.id;
  role(card, "name").textContent = photo.name;
  role(card, "close").addEventListener("click", () => { photos.delete(photo.id); card.remove(); });
  document.getElementById("photos").prepend(card);
  photos.set(photo.id, { card, exam: null, viewer: new Viewer(card, photo.id) });
  spoofForm(card, photo.id);
  examine(photo.id);
}

async function examine(id) {
  const entry = photos.get(id);
  const { card } = entry;
  const key = detector();
  const status = role(card, "status");
  status.textContent = "examining…";
  status.className = "status busy";
  try {
    const job = await api(`/api/photos/${id}/examine`, { method: "POST", body: form({ detector: key }) });
    const exam = await follow(job, (j) => { status.textContent = `${j.stage}…`; });
    if (!photos.has(id) || key !== detector()) return;
    entry.exam = exam;
    show(card, exam);
    entry.viewer.load(exam);
    status.textContent = `examined by ${key}`;
    status.className = "status";
  } catch (e) {
    status.textContent = "failed";
    status.className = "status failed";
    message(e.message);
  }
}

function show(card, exam) {
  const ident = exam.identification;
  const prediction = role(card, "prediction");
  prediction.textContent = exam.answer;
  prediction.style.borderColor = exam.colours[exam.classes.indexOf(ident.nearest)] || "";
  role(card, "share").textContent = `${percent(ident.vote_share)} of ${ident.patches} patch votes`;
  bars(role(card, "bars"), exam);
  const exif = exam.exif;
  role(card, "exif").textContent = exif ? `${exif.make} / ${exif.model}` : "none";
  const jpeg = exam.jpeg;
  role(card, "jpeg").textContent = jpeg
    ? `quality about ${jpeg.quality}, ${jpeg.subsampling}; tables ${
      jpeg.match === null ? "not compared (no reference for this model)" : jpeg.match ? `match ${ident.nearest}'s` : `differ from ${ident.nearest}'s`}`
    : `none (${exam.format})`;
  role(card, "file").textContent = `${exam.format}, ${exam.width}\u00d7${exam.height}, ${(exam.bytes / 1024).toFixed(0)} KB`;
  const warning = role(card, "exif-warning");
  const disagree = exam.checks.find((c) => c.name === "EXIF disagrees");
  warning.hidden = !disagree;
  warning.textContent = disagree ? `\u26a0 ${disagree.sentence}` : "";
  const list = role(card, "checks");
  list.replaceChildren();
  for (const check of exam.checks) {
    const item = document.createElement("li");
    item.className = check.status;
    const name = document.createElement("strong");
    name.textContent = check.name;
    item.append(name, " ", check.sentence);
    list.append(item);
  }
  role(card, "report").href = `/photos/${card.dataset.photo}/report?detector=${encodeURIComponent(detector())}`;
  targets(card, exam);
}

function bars(box, exam) {
  box.replaceChildren();
  const scores = exam.identification.scores;
  const order = Object.keys(scores).sort((a, b) => scores[b] - scores[a]);
  for (const name of order) {
    const row = document.createElement("div");
    row.className = "bar" + (name === exam.identification.nearest ? " winner" : "");
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = name;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = percent(scores[name], 1);
    fill.style.background = exam.colours[exam.classes.indexOf(name)];
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = percent(scores[name]);
    row.append(label, track, value);
    box.append(row);
  }
}

// -- the block map viewer: zoom, pan, hover, opacity -------------------------------------------

class Viewer {
  constructor(card, id) {
    this.card = card;
    this.box = role(card, "viewer");
    this.stage = role(card, "stage");
    this.img = role(card, "img");
    this.canvas = role(card, "map");
    this.tip = role(card, "tip");
    this.zoom = 1; this.x = 0; this.y = 0; this.exam = null;
    this.img.src = `/api/photos/${id}/image`;
    this.img.addEventListener("load", () => this.fit());
    const opacity = role(card, "opacity");
    opacity.addEventListener("input", () => { this.canvas.style.opacity = opacity.value / 100; });
    this.canvas.style.opacity = opacity.value / 100;
    role(card, "zoom-in").addEventListener("click", () => this.zoomAt(1.5));
    role(card, "zoom-out").addEventListener("click", () => this.zoomAt(1 / 1.5));
    role(card, "fit").addEventListener("click", () => this.fit());
    role(card, "one").addEventListener("click", () => this.zoomAt(1 / this.zoom));
    this.box.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = this.box.getBoundingClientRect();
      this.zoomAt(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
    this.box.addEventListener("pointerdown", (e) => {
      this.drag = { x: e.clientX - this.x, y: e.clientY - this.y };
      this.box.setPointerCapture(e.pointerId);
    });
    this.box.addEventListener("pointerup", () => { this.drag = null; });
    this.box.addEventListener("pointermove", (e) => {
      if (this.drag) {
        this.x = e.clientX - this.drag.x; this.y = e.clientY - this.drag.y; this.apply();
      }
      this.hover(e);
    });
    this.box.addEventListener("pointerleave", () => { this.tip.hidden = true; });
  }

  load(exam) {
    this.exam = exam;
    const grid = exam.blocks;
    const columns = Math.floor(exam.width / grid.size);
    const rows = Math.floor(exam.height / grid.size);
    this.columns = columns; this.rows = rows;
    // One canvas pixel per block, scaled up without smoothing to the photo's full size.
    this.canvas.width = Math.max(columns, 1);
    this.canvas.height = Math.max(rows, 1);
    this.canvas.style.width = `${columns * grid.size}px`;
    this.canvas.style.height = `${rows * grid.size}px`;
    const ctx = this.canvas.getContext("2d");
    const pixels = ctx.createImageData(this.canvas.width, this.canvas.height);
    grid.labels.forEach((label, i) => {
      const [y, x] = grid.positions[i];
      const at = 4 * ((y / grid.size) * columns + x / grid.size);
      const hex = exam.colours[label];
      pixels.data[at] = parseInt(hex.slice(1, 3), 16);
      pixels.data[at + 1] = parseInt(hex.slice(3, 5), 16);
      pixels.data[at + 2] = parseInt(hex.slice(5, 7), 16);
      pixels.data[at + 3] = Math.round(255 * (0.25 + 0.75 * grid.score[i]));
    });
    ctx.putImageData(pixels, 0, 0);
    this.legend();
  }

  legend() {
    const exam = this.exam;
    const counts = new Map();
    for (const label of exam.blocks.labels) counts.set(label, (counts.get(label) || 0) + 1);
    const list = role(this.card, "legend");
    list.replaceChildren();
    for (const [label, count] of [...counts].sort((a, b) => b[1] - a[1])) {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = exam.colours[label];
      item.append(swatch, `${exam.classes[label]} (${count} block${count > 1 ? "s" : ""})`);
      list.append(item);
    }
  }

  fit() {
    const w = this.img.naturalWidth, h = this.img.naturalHeight;
    if (!w || !h) return;
    const r = this.box.getBoundingClientRect();
    this.zoom = Math.min(r.width / w, r.height / h);
    this.x = (r.width - w * this.zoom) / 2;
    this.y = (r.height - h * this.zoom) / 2;
    this.apply();
  }

  zoomAt(factor, cx, cy) {
    const r = this.box.getBoundingClientRect();
    if (cx === undefined) { cx = r.width / 2; cy = r.height / 2; }
    const zoom = Math.min(Math.max(this.zoom * factor, 0.02), 32);
    this.x = cx - (cx - this.x) * (zoom / this.zoom);
    this.y = cy - (cy - this.y) * (zoom / this.zoom);
    this.zoom = zoom;
    this.apply();
  }

  apply() {
    this.stage.style.transform = `translate(${this.x}px, ${this.y}px) scale(${this.zoom})`;
    role(this.card, "zoom-level").textContent = `${Math.round(this.zoom * 100)}%`;
  }

  hover(e) {
    const exam = this.exam;
    if (!exam || !exam.blocks) return;
    const r = this.box.getBoundingClientRect();
    const px = (e.clientX - r.left - this.x) / this.zoom;
    const py = (e.clientY - r.top - this.y) / this.zoom;
    const size = exam.blocks.size;
    const col = Math.floor(px / size), row = Math.floor(py / size);
    if (px < 0 || py < 0 || col >= this.columns || row >= this.rows) { this.tip.hidden = true; return; }
    const i = row * this.columns + col;
    const label = exam.blocks.labels[i];
    this.tip.textContent = `${exam.classes[label]} \u00b7 score ${percent(exam.blocks.score[i])} \u00b7 block at (${col * size}, ${row * size}) px`;
    this.tip.hidden = false;
    const [mx, my] = [e.clientX - r.left, e.clientY - r.top];
    const left = mx + 14 + this.tip.offsetWidth > r.width ? mx - 14 - this.tip.offsetWidth : mx + 14;
    const top = my + 14 + this.tip.offsetHeight > r.height ? my - 14 - this.tip.offsetHeight : my + 14;
    this.tip.style.left = `${Math.max(left, 0)}px`;
    this.tip.style.top = `${Math.max(top, 0)}px`;
  }
}

// -- spoofing ----------------------------------------------------------------------------------

function targets(card, exam) {
  const info = detectorInfo();
  const target = role(card, "target");
  const keep = target.value;
  target.replaceChildren();
  for (const name of info.classes) {
    if (name === exam.identification.nearest) continue;
    target.append(new Option(name, name));
  }
  if ([...target.options].some((o) => o.value === keep)) target.value = keep;
  const method = role(card, "method");
  const chosen = method.value;
  method.replaceChildren();
  for (const [key, label] of Object.entries(info.methods)) method.append(new Option(label, key));
  if ([...method.options].some((o) => o.value === chosen)) method.value = chosen;
  methodChanged(card);
}

function methodChanged(card) {
  const info = detectorInfo();
  const method = role(card, "method").value;
  const generated = info.generator_targets[method];
  const target = role(card, "target");
  if (generated) target.value = generated;
  target.disabled = Boolean(generated);
  role(card, "budget").disabled = Boolean(generated);
  outputChoices(card);
}

function outputChoices(card) {
  const info = detectorInfo();
  const output = role(card, "output");
  const jpeg = output.querySelector('option[value="jpeg"]');
  jpeg.disabled = !info.tables.includes(role(card, "target").value);
  if (jpeg.disabled && output.value === "jpeg") output.value = "png";
}

function spoofForm(card, id) {
  const formEl = role(card, "spoof-form");
  role(card, "method").addEventListener("change", () => methodChanged(card));
  role(card, "target").addEventListener("change", () => outputChoices(card));
  formEl.addEventListener("submit", async (e) => {
    e.preventDefault();
    const fields = new FormData(formEl);
    const budget = fields.get("budget");
    const run = role(card, "spoof-run");
    const progress = role(card, "spoof-progress");
    const bar = progress.querySelector("progress");
    const stage = role(card, "spoof-stage");
    run.disabled = true;
    progress.hidden = false;
    role(card, "spoof-result").hidden = true;
    try {
      const job = await api(`/api/photos/${id}/spoof`, {
        method: "POST",
        body: form({
          detector: detector(),
          target: role(card, "target").value,
          method: fields.get("method"),
          budget,
          value: fields.get(budget),
          output: fields.get("output"),
        }),
      });
      const result = await follow(job, (j) => {
        bar.value = j.progress;
        stage.textContent = `${j.stage} (${j.seconds} s)`;
      });
      spoofResult(card, result);
    } catch (err) {
      message(err.message);
    } finally {
      run.disabled = false;
      progress.hidden = true;
    }
  });
}

function spoofResult(card, result) {
  const box = role(card, "spoof-result");
  const stamp = Date.now();
  role(card, "spoof-image").src = `/api/spoofs/${result.id}/image?${stamp}`;
  role(card, "spoof-diff").src = `/api/spoofs/${result.id}/difference?${stamp}`;
  role(card, "diff-caption").textContent = `difference \u00d7${result.gain.toFixed(0)} around grey`;
  role(card, "spoof-answer").textContent = result.after.model;
  role(card, "spoof-share").textContent = `${percent(result.after.vote_share)} of the votes`;
  const openLine = role(card, "spoof-open-set-line");
  openLine.hidden = result.open_set == null; // no calibration: the vote is the only answer
  role(card, "spoof-open-set").textContent = result.open_set === "unknown"
    ? `unknown model (nearest ${result.after.model})`
    : result.open_set || "";
  const success = role(card, "spoof-success");
  success.textContent = result.success ? `target ${result.target} reached` : `target ${result.target} NOT reached`;
  success.className = result.success ? "ok" : "bad";
  const db = (x) => (x === null ? "unchanged" : `${x.toFixed(1)} dB`);
  role(card, "spoof-psnr").textContent = result.psnr === result.attack_psnr
    ? db(result.psnr)
    : `${db(result.psnr)} (the attack's own change ${db(result.attack_psnr)}, the rest the JPEG's)`;
  role(card, "spoof-ssim").textContent = result.ssim.toFixed(4);
  role(card, "spoof-linf").textContent = result.linf;
  role(card, "spoof-format").textContent = result.jpeg;
  const link = role(card, "spoof-download");
  link.href = `/api/spoofs/${result.id}/download`;
  link.setAttribute("download", result.saved);
  link.textContent = `download ${result.saved}`;
  box.hidden = false;
}

// -- batch -------------------------------------------------------------------------------------

async function batch(fileList) {
  const files = Array.from(fileList);
  if (!files.length || tooLarge(files)) return;
  const data = new FormData();
  for (const f of files) data.append("files", f, f.webkitRelativePath || f.name);
  data.append("detector", detector());
  const progress = document.getElementById("batch-progress");
  const bar = progress.querySelector("progress");
  const stage = progress.querySelector(".stage");
  progress.hidden = false;
  try {
    const job = await api("/api/batch", { method: "POST", body: data });
    const result = await follow(job, (j) => { bar.value = j.progress; stage.textContent = j.stage; });
    batchTable(result);
  } catch (e) {
    message(e.message);
  } finally {
    progress.hidden = true;
  }
}

function batchTable(result) {
  const table = document.getElementById("batch-table");
  const body = table.tBodies[0];
  body.replaceChildren();
  const columns = [...table.tHead.rows[0].cells].map((th) => th.dataset.col);
  for (const row of result.rows) {
    const tr = document.createElement("tr");
    if (!row.prediction) tr.className = "failed";
    for (const col of columns) {
      const td = document.createElement("td");
      td.textContent = row[col];
      tr.append(td);
    }
    body.append(tr);
  }
  table.hidden = false;
  const csv = document.getElementById("batch-csv");
  csv.href = `/api/batch/${result.id}.csv`;
  csv.hidden = false;
}

for (const th of document.querySelectorAll("table.sortable th")) {
  th.addEventListener("click", () => {
    const table = th.closest("table");
    const index = th.cellIndex;
    const up = th.dataset.order !== "up";
    for (const other of th.parentElement.cells) delete other.dataset.order;
    th.dataset.order = up ? "up" : "down";
    const key = (tr) => {
      const text = tr.cells[index].textContent;
      return "numeric" in th.dataset ? parseFloat(text) || -1 : text.toLowerCase();
    };
    const rows = [...table.tBodies[0].rows].sort((a, b) => {
      const [x, y] = [key(a), key(b)];
      return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
    });
    table.tBodies[0].append(...rows);
  });
}

for (const id of ["batch-folder", "batch-files"]) {
  const el = document.getElementById(id);
  el.addEventListener("change", () => { batch(el.files); el.value = ""; });
}
