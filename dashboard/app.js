// The Switchyard dashboard: polls GET /api/overview every second (the
// server's cached snapshot) and /api/dead, draws the numbers, two small
// canvas charts and the tables, and sends the admin actions with the token
// typed into the page (kept in memory only, sent as a Bearer token): the
// dead-letter and queue actions, and the cancel of the job looked up.
// Everything from the server is set as text, never as HTML.
'use strict';

const HISTORY = 120;  // points kept per chart series (two minutes)
const history = { completed: [], failed: [], submitted: [], p50: [], p90: [], p99: [] };
let lastQueueCounters = null;
let lastTimeMs = null;
let overview = null;
let polls = 0;
let shownJob = null;  // the last answer of GET /api/job/ID

const $ = (id) => document.getElementById(id);

function setNumber(id, value, digits) {
  const el = $(id);
  if (value === null || value === undefined) {
    el.textContent = '–';
    el.removeAttribute('data-value');
    return;
  }
  el.dataset.value = String(value);
  el.textContent = digits ? Number(value).toFixed(digits) : Number(value).toLocaleString('en-US');
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? '–' : String(text);
  if (cls) td.className = cls;
  return td;
}

function fillTable(id, items, fill) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  for (const item of items) fill(body.insertRow(), item);
  if (items.length === 0) {
    const td = body.insertRow().insertCell();
    td.colSpan = $(id).tHead.rows[0].cells.length;
    td.className = 'muted';
    td.textContent = 'none';
  }
}

function push(series, value) {
  series.push(value === null || value === undefined ? null : Number(value));
  if (series.length > HISTORY) series.shift();
}

// Rates from the snapshot, or from the durable queue's counters between two
// polls when the snapshot has none.
function rates(o) {
  if (o.totals && o.totals.rates) return o.totals.rates;
  const q = o.queue;
  if (!q || !q.counters || !o.time_ms) return null;
  let out = null;
  if (lastQueueCounters && lastTimeMs && o.time_ms > lastTimeMs) {
    const s = (o.time_ms - lastTimeMs) / 1000;
    const d = (k) => Math.max(0, ((q.counters[k] || 0) - (lastQueueCounters[k] || 0)) / s);
    out = { submitted: d('submitted'), completed: d('completed'), failed: d('failed') };
  }
  lastQueueCounters = q.counters;
  lastTimeMs = o.time_ms;
  return out;
}

function drawChart(id, series, colors) {
  const canvas = $(id);
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== w * ratio) { canvas.width = w * ratio; canvas.height = h * ratio; }
  const g = canvas.getContext('2d');
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  let max = 0;
  for (const s of series) for (const v of s) if (v !== null && v > max) max = v;
  max = max > 0 ? max * 1.15 : 1;
  const left = 44, bottom = h - 16;
  g.strokeStyle = '#27303a';
  g.fillStyle = '#8593a3';
  g.font = '11px system-ui, sans-serif';
  for (let i = 0; i <= 3; i++) {
    const y = 6 + (bottom - 6) * i / 3;
    g.beginPath(); g.moveTo(left, y); g.lineTo(w, y); g.stroke();
    const label = max * (3 - i) / 3;
    g.fillText(label >= 100 ? label.toFixed(0) : label.toFixed(1), 2, y + 4);
  }
  g.fillText(HISTORY + ' s ago', left, h - 2);
  g.fillText('now', w - 24, h - 2);
  series.forEach((s, k) => {
    g.strokeStyle = colors[k];
    g.lineWidth = 1.6;
    g.beginPath();
    let drawing = false;
    s.forEach((v, i) => {
      if (v === null) { drawing = false; return; }
      const x = left + (w - left) * (i + HISTORY - s.length) / (HISTORY - 1);
      const y = bottom - (bottom - 6) * v / max;
      if (drawing) g.lineTo(x, y); else g.moveTo(x, y);
      drawing = true;
    });
    g.stroke();
  });
}

function render(o) {
  overview = o;
  const d = o.dashboard || {};
  const q = o.queue || null;
  const t = o.totals || {};
  $('mode').textContent = d.durable ? 'durable · queue ' + d.queue : 'memory mode';
  $('paused').hidden = !(q && q.paused);
  $('admin-state').textContent = d.admin ? 'admin actions need the token' : 'read-only';
  $('admin-state').className = 'badge ' + (d.admin ? 'ok' : 'warn');
  $('token').hidden = !d.admin;
  for (const b of document.querySelectorAll('button.admin')) b.disabled = !d.admin || !d.durable;
  const err = o.error || null;
  $('error').hidden = !err;
  $('error').textContent = err || '';
  $('updated').textContent = o.time_ms ? 'updated ' + new Date(o.time_ms).toLocaleTimeString() : '';

  const pick = (k) => (q ? q[k] : t[k]);
  setNumber('q-ready', pick('ready'));
  setNumber('q-delayed', pick('delayed'));
  setNumber('q-running', pick('running'));
  setNumber('q-dead', q ? q.dead : t.dead);
  setNumber('t-in-flight', t.in_flight);
  setNumber('t-workers', t.workers !== undefined ? t.workers : (q ? q.workers.length : null));
  setNumber('t-capacity', t.capacity !== undefined ? t.capacity
    : (q ? q.workers.reduce((a, w) => a + (w.capacity || 0), 0) : null));
  const r = rates(o);
  setNumber('r-completed', r ? r.completed : null, 1);
  setNumber('r-failed', r ? r.failed : null, 1);
  push(history.completed, r ? r.completed : null);
  push(history.failed, r ? r.failed : null);
  push(history.submitted, r ? r.submitted : null);
  const lat = t.latency_ms || null;
  push(history.p50, lat ? lat.p50 : null);
  push(history.p90, lat ? lat.p90 : null);
  push(history.p99, lat ? lat.p99 : null);
  // Submitted first, so that completed (usually the same line) draws on top.
  drawChart('chart-throughput', [history.submitted, history.failed, history.completed],
    ['#4fb3ff', '#ff5c5c', '#3ecf8e']);
  drawChart('chart-latency', [history.p50, history.p90, history.p99],
    ['#3ecf8e', '#4fb3ff', '#ff5c5c']);

  const brokers = o.brokers && o.brokers.length ? o.brokers
    : (q ? q.brokers.map((b) => ({ endpoint: b.frontend, up: !b.draining, draining: b.draining,
                                    from_registry: true })) : []);
  fillTable('brokers', brokers, (row, b) => {
    cell(row, b.endpoint, 'id');
    const health = cell(row, b.from_registry ? (b.draining ? 'draining' : 'registered')
      : (!b.up ? 'down' : b.draining ? 'draining' : 'up'));
    health.title = b.error || '';
    health.className = b.up ? 'ok' : 'error-text';
    cell(row, b.ready); cell(row, b.running); cell(row, b.in_flight); cell(row, b.workers);
    cell(row, b.rates ? b.rates.completed.toFixed(1) : null);
  });
  const workers = o.workers && o.workers.length ? o.workers
    : (q ? q.workers.map((w) => ({ name: w.name, broker: (w.brokers || []).join(' '),
                                    capacity: w.capacity, outstanding: w.outstanding })) : []);
  fillTable('workers', workers, (row, w) => {
    cell(row, w.name, 'id'); cell(row, w.broker, 'id'); cell(row, w.capacity);
    cell(row, w.credit); cell(row, w.outstanding);
    cell(row, w.quarantined ? 'quarantined' : 'ok');
  });
  updateCancel();
}

function renderDead(list) {
  $('dead-total').textContent = list.total !== undefined ? '(' + list.total + ')' : '';
  $('dead-total').dataset.value = String(list.total || 0);
  fillTable('dead', list.dead || [], (row, d) => {
    cell(row, d.id, 'id'); cell(row, d.task); cell(row, d.attempts); cell(row, d.why);
    cell(row, d.error || d.decode_error, 'error-text');
    cell(row, d.dead_at_ms ? new Date(d.dead_at_ms).toLocaleTimeString() : null);
  });
}

async function getJson(path) {
  const res = await fetch(path, { cache: 'no-store' });
  const body = await res.json().catch(() => ({}));
  return { status: res.status, body };
}

async function poll() {
  try {
    const o = await getJson('/api/overview');
    render(o.body);
    if (o.body.dashboard && o.body.dashboard.durable) {
      const dead = await getJson('/api/dead?limit=50');
      if (dead.status === 200) renderDead(dead.body);
    } else {
      $('dead-total').textContent = '(memory mode: no dead letters are kept)';
    }
  } catch (e) {
    $('error').hidden = false;
    $('error').textContent = 'dashboard unreachable: ' + e.message;
  }
  document.body.dataset.polls = String(++polls);
}

// Sends an admin action and shows its answer in `statusEl` (`describe` words
// a 200's body). Resolves with {ok, status, body}, or null when the user did
// not confirm.
async function act(path, confirmText, statusEl = $('action-status'),
  describe = (body) => 'done: ' + JSON.stringify(body)) {
  if (confirmText && !window.confirm(confirmText)) return null;
  statusEl.dataset.status = 'pending';
  statusEl.textContent = '…';
  const headers = {};
  const token = $('token').value.trim();
  if (token) headers.Authorization = 'Bearer ' + token;
  const res = await fetch(path, { method: 'POST', headers, cache: 'no-store' });
  const body = await res.json().catch(() => ({}));
  statusEl.dataset.status = String(res.status);
  statusEl.textContent = res.ok ? describe(body) : res.status + ': ' + (body.error || res.statusText);
  statusEl.className = res.ok ? 'ok' : 'error-text';
  return { ok: res.ok, status: res.status, body };
}

async function actOnQueue(path, confirmText) {
  if (await act(path, confirmText)) await poll();
}

// Looks job `id` up and shows it; enables Cancel when that makes sense.
async function lookUp(id) {
  const r = await getJson('/api/job/' + id);
  shownJob = r.status === 200 ? r.body : null;
  const status = shownJob && shownJob.result ? shownJob.result.status : '';
  $('job-state').textContent = r.status === 200
    ? 'state: ' + r.body.state + (status ? ' (' + status + ')' : '')
    : r.status + ': ' + (r.body.error || '');
  $('job-state').dataset.state = r.status === 200 ? r.body.state : 'error';
  $('job-state').dataset.status = status;
  $('job-result').hidden = false;
  $('job-result').textContent = JSON.stringify(r.body, null, 2);
  updateCancel();
}

async function findJob(event) {
  event.preventDefault();
  const id = $('job-id').value.trim().toLowerCase();
  $('cancel-status').textContent = '';
  delete $('cancel-status').dataset.cancel;
  if (!/^[0-9a-f]{32}$/.test(id)) {
    $('job-state').textContent = 'a job id is 32 hex digits';
    $('job-result').hidden = true;
    shownJob = null;
    updateCancel();
    return;
  }
  await lookUp(id);
}

// Cancel is offered for a job looked up waiting, delayed or running, in a
// durable queue, on a dashboard with an admin token; the title says why not.
const CANCELLABLE = ['ready', 'delayed', 'running'];
function updateCancel() {
  const d = overview ? overview.dashboard || {} : null;
  let why = '';
  if (!d) why = 'connecting…';
  else if (!d.durable) why = 'memory mode: no durable queue to cancel in (yard cancel --connect)';
  else if (!d.admin) why = 'read-only dashboard (started without --admin-token-file)';
  else if (!shownJob) why = 'look a job up first';
  else if (shownJob.state === 'unknown') {
    why = 'not found among the first ' + shownJob.scanned + ' jobs of each list (yard cancel --redis reaches it anywhere)';
  } else if (!CANCELLABLE.includes(shownJob.state)) {
    why = 'only a waiting, delayed or running job can be cancelled; this one is ' + shownJob.state;
  }
  $('btn-cancel').disabled = why !== '';
  $('btn-cancel').title = why || 'cancel job ' + shownJob.id + ' (needs the admin token)';
}

const CANCEL_ANSWERS = {
  requested: 'cancel requested: the broker that holds or claims it finishes it as Cancelled',
  full: 'not recorded: too many cancels wait for the brokers; try again later',
  finished: 'not cancelled: it has already finished',
  dead: 'not cancelled: it is a dead letter',
  'not found': 'not cancelled: not found among the first jobs of each list',
};

async function cancelJob() {
  const id = shownJob.id;
  const r = await act('/api/job/' + id + '/cancel', 'Cancel job ' + id + '?', $('cancel-status'),
    (b) => (CANCEL_ANSWERS[b.cancel] || b.cancel) + (b.status ? ' (' + b.status + ')' : ''));
  if (!r) return;
  $('cancel-status').dataset.cancel = r.ok ? r.body.cancel : '';
  await lookUp(id);
  // A broker carries the cancel out within a few seconds: watch the job
  // until it has finished (for up to 15 s) unless another is looked up.
  for (let i = 0; i < 30 && r.ok && r.body.cancel === 'requested'; i++) {
    if (!shownJob || shownJob.id !== id || !CANCELLABLE.includes(shownJob.state)) break;
    await new Promise((done) => setTimeout(done, 500));
    await lookUp(id);
  }
}

$('btn-requeue').addEventListener('click', () => actOnQueue('/api/dead/requeue'));
$('btn-purge').addEventListener('click',
  () => actOnQueue('/api/dead/purge', 'Delete every dead letter for good?'));
$('btn-pause').addEventListener('click', () => actOnQueue('/api/queue/pause'));
$('btn-resume').addEventListener('click', () => actOnQueue('/api/queue/resume'));
$('btn-cancel').addEventListener('click', cancelJob);
$('job-form').addEventListener('submit', findJob);
// One poll at a time: the next starts a second after the last one ended.
(async function loop() {
  await poll();
  setTimeout(loop, 1000);
})();
