// The dashboard in a real headless Chromium against a real cluster: a
// redis-server on a free loopback port, `yard broker --redis`, `yard worker`,
// `yard push` (echo jobs, and `fail` jobs with one attempt that become dead
// letters), `yard dashboard` with an admin token. Checks:
//   - the page loads with no console errors;
//   - the queue's numbers on the page are those of `yard queue stats --json`;
//   - the dead letters are listed with their last error, and the search box
//     finds one by id;
//   - Requeue without the token is refused (403) and moves nothing;
//   - with the token: Pause, then Requeue moves every dead letter back (dead
//     0 in `yard queue stats --json`), Resume lets them run (and die) again;
//   - Cancel is disabled for a dead letter; a running `hang` job looked up
//     by id is cancelled from the page and ends Cancelled (on the page and
//     in `yard result --json`);
//   - a screenshot (OUT_DIR/dashboard.png);
//   - a memory-mode broker watched with --connect: shown up with its
//     worker's capacity, read-only, no actions, no console errors.
// Usage: node dashboard_test.mjs YARD_BINARY OUT_DIR
// Exit 0: passed; 1: failed (also when Chromium or redis-server is missing).
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

const [yard, outDir] = process.argv.slice(2);
const CHROMIUM = process.env.YARD_CHROMIUM || '/usr/bin/chromium';
const REDIS = process.env.YARD_REDIS_SERVER || '/usr/bin/redis-server';
const FAILING_JOBS = 4;
const deadline = Date.now() + 90_000;  // the whole test, bounded

const dir = mkdtempSync(join(tmpdir(), 'yard-dashboard-test-'));
const children = [];
let failed = false;

function log(...args) { console.log('[dashboard_test]', ...args); }
function fail(message) { throw new Error(message); }
function check(cond, message) { if (!cond) fail(message); }

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

// Starts a long-running child; resolves with the first stdout line matching
// `ready` (its match), within `ms`.
function start(name, cmd, args, ready, ms = 15_000) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push({ name, child });
  let out = '', err = '';
  child.stderr.on('data', (d) => { err += d; if (err.length > 65536) err = err.slice(-32768); });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: not ready in ${ms} ms; stderr: ${err}`)), ms);
    child.on('exit', (code) => reject(new Error(`${name} exited (${code}) before ready: ${err}`)));
    child.stdout.on('data', (d) => {
      out += d;
      const m = ready && out.match(ready);
      if (m) { clearTimeout(timer); resolve(m); }
    });
    if (!ready) { clearTimeout(timer); resolve(null); }
  });
}

// Runs a command to its end (bounded); resolves with stdout.
function run(args, ms = 30_000) {
  return new Promise((resolve, reject) => {
    execFile(yard, args, { timeout: ms, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`yard ${args.join(' ')}: ${error.message} ${stderr}`));
      else resolve(stdout);
    });
  });
}

async function waitFor(what, fn, ms = 20_000) {
  const until = Math.min(Date.now() + ms, deadline);
  let last;
  while (Date.now() < until) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  fail(`timed out waiting for ${what}`);
}

// A memory-mode broker watched with --connect: the broker and its worker
// shown, no actions offered, no console errors.
async function memoryMode(browser) {
  const [, frontend, backend] = await start('memory broker', yard, ['broker',
    '--frontend', 'tcp://127.0.0.1:*', '--backend', 'tcp://127.0.0.1:*', '--heartbeat-ms', '200'],
    /ready frontend=(\S+) backend=(\S+)/);
  await start('memory worker', yard, ['worker', '--connect', backend, '--concurrency', '3',
    '--heartbeat-ms', '200'], null);
  const [, address] = await start('memory dashboard', yard, ['dashboard', '--connect', frontend,
    '--listen', '127.0.0.1:0'], /listening=(\S+)/);
  const page = await browser.newPage();
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(`http://${address}/`);
  await waitFor('the memory broker and its worker on the page', async () =>
    (await page.getAttribute('#t-capacity', 'data-value')) === '3' &&
    (await page.textContent('#brokers tbody')).includes('up'));
  check(await page.textContent('#mode') === 'memory mode', 'memory mode badge');
  check(await page.textContent('#admin-state') === 'read-only', 'read-only badge');
  check(await page.isDisabled('#btn-requeue'), 'actions offered in memory mode');
  check(problems.length === 0, `memory mode: the page logged errors: ${problems.join('; ')}`);
}

// Cancel from the page: a `hang` job (it runs until cancelled) looked up
// running, Cancel clicked with the token typed in; the page shows it
// finished Cancelled, and so does `yard result --json`.
async function cancelFromThePage(page, frontend, redis) {
  const [, id] = await start('hang push', yard, ['push', '--connect', frontend,
    '--task', 'hang', '--count', '1', '--print-ids', '--allow-failures', '--timeout', '60'],
    /^([0-9a-f]{32})$/m);
  await page.fill('#job-id', id);
  await waitFor('the hang job to be looked up running', async () => {
    await page.click('#job-search');
    await page.waitForTimeout(300);
    return (await page.getAttribute('#job-state', 'data-state')) === 'running';
  }, 10_000);
  check(!(await page.isDisabled('#btn-cancel')),
    `cancel disabled for a running job: ${await page.getAttribute('#btn-cancel', 'title')}`);
  await page.click('#btn-cancel');
  await waitFor('the cancel to be recorded', async () =>
    (await page.getAttribute('#cancel-status', 'data-cancel')) === 'requested', 5_000);
  await waitFor('the page to show the job cancelled', async () =>
    (await page.getAttribute('#job-state', 'data-state')) === 'finished' &&
    (await page.getAttribute('#job-state', 'data-status')) === 'Cancelled', 15_000);
  check(await page.isDisabled('#btn-cancel'), 'cancel still offered for a finished job');
  check(/already finished|waiting, delayed or running/.test(await page.getAttribute('#btn-cancel', 'title')),
    `the disabled cancel's title: ${await page.getAttribute('#btn-cancel', 'title')}`);
  const result = JSON.parse(await run(['result', id, '--redis', redis, '--json']));
  check(result.status === 'Cancelled', `yard result: ${JSON.stringify(result)}`);
  log(`cancelled the running job ${id} from the page`);
}

async function main() {
  check(yard && outDir, 'usage: node dashboard_test.mjs YARD_BINARY OUT_DIR');
  check(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (scripts/deps.sh installs Debian's chromium)`);
  check(existsSync(REDIS), `no redis-server at ${REDIS}`);
  mkdirSync(outDir, { recursive: true });

  const redisPort = await freePort();
  await start('redis-server', REDIS, ['--port', String(redisPort), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no', '--dir', dir], /Ready to accept connections/);
  const redis = `redis://127.0.0.1:${redisPort}`;
  const [, frontend, backend] = await start('broker', yard, ['broker', '--redis', redis,
    '--frontend', 'tcp://127.0.0.1:*', '--backend', 'tcp://127.0.0.1:*', '--heartbeat-ms', '200'],
    /ready frontend=(\S+) backend=(\S+)/);
  const startWorker = () => start('worker', yard, ['worker', '--connect', backend,
    '--concurrency', '2', '--heartbeat-ms', '200'], null);
  await startWorker();
  const push = (task, count, extra = []) => run(['push', '--connect', frontend, '--task', task,
    '--count', String(count), '--size', '64', '--json', ...extra]);
  await push('echo', 300);
  await push('fail', FAILING_JOBS, ['--max-attempts', '1', '--allow-failures']);
  const stats = async () => JSON.parse(await run(['queue', 'stats', '--redis', redis, '--json']));
  await waitFor(`${FAILING_JOBS} dead letters`, async () => {
    const s = await stats();
    return s.dead === FAILING_JOBS && s.ready === 0 && s.running === 0;
  });

  const token = randomBytes(24).toString('hex');
  writeFileSync(join(dir, 'token'), `${token}\n`, { mode: 0o600 });
  const [, address] = await start('dashboard', yard, ['dashboard', '--redis', redis,
    '--listen', '127.0.0.1:0', '--admin-token-file', join(dir, 'token')],
    /listening=(\S+)/);
  const url = `http://${address}/`;

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  try {
    const page = await browser.newPage({ viewport: { width: 1360, height: 1000 } });
    const problems = [];
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('dialog', (d) => d.accept());
    const response = await page.goto(url);
    check(response.status() === 200, `GET / answered ${response.status()}`);
    const polls = async () => Number(await page.getAttribute('body', 'data-polls'));
    const value = async (id) => {
      const v = await page.getAttribute(`#${id}`, 'data-value');
      return v === null ? null : Number(v);
    };
    // Some live traffic for the throughput chart, then the numbers settle.
    await push('echo', 1500, ['--rate', '500']);
    await waitFor('the page to show the queue as the CLI does', async () => {
      const s = await stats();
      const shown = { ready: await value('q-ready'), delayed: await value('q-delayed'),
        running: await value('q-running'), dead: await value('q-dead') };
      const same = ['ready', 'delayed', 'running', 'dead'].every((k) => shown[k] === s[k]);
      if (!same) log('page', JSON.stringify(shown), 'cli', JSON.stringify({ ready: s.ready, delayed: s.delayed, running: s.running, dead: s.dead }));
      return same && s.dead === FAILING_JOBS;
    });
    check(await page.textContent('#mode') === 'durable · queue default', 'mode badge');
    check(Number(await page.getAttribute('#t-workers', 'data-value')) >= 1, 'no worker shown');
    const deadRows = await page.$$eval('#dead tbody tr', (rows) => rows.map((r) =>
      Array.from(r.cells, (c) => c.textContent)));
    check(deadRows.length === FAILING_JOBS, `dead rows: ${JSON.stringify(deadRows)}`);
    check(deadRows.every((r) => r[1] === 'fail' && /always fails/.test(r[4])),
      `dead rows without the last error: ${JSON.stringify(deadRows)}`);

    // The search box: one dead letter by id.
    await page.fill('#job-id', deadRows[0][0]);
    await page.click('#job-search');
    await waitFor('the job lookup', async () =>
      (await page.getAttribute('#job-state', 'data-state')) === 'dead', 5_000);
    check(/always fails/.test(await page.textContent('#job-result')), 'job details');
    check(await page.isDisabled('#btn-cancel'), 'cancel offered for a dead letter');

    await page.waitForTimeout(1200);  // one more poll for the chart
    await page.screenshot({ path: join(outDir, 'dashboard.png'), fullPage: true });

    check(problems.length === 0, `the page logged errors: ${problems.join('; ')}`);

    // Without the token: refused, nothing moves (Chromium logs the 403).
    await page.click('#btn-requeue');
    await waitFor('403', async () =>
      (await page.getAttribute('#action-status', 'data-status')) === '403', 5_000);
    check((await stats()).dead === FAILING_JOBS, 'a refused requeue moved dead letters');

    // With the token: pause, requeue, resume. The worker is stopped
    // meanwhile, so the requeued jobs wait whenever the broker sees the
    // pause (within 250 ms), and a fresh one runs them after the resume.
    await page.fill('#token', token);
    await page.click('#btn-pause');
    await waitFor('paused', async () => (await stats()).paused === true, 5_000);
    const worker = children.find((c) => c.name === 'worker').child;
    worker.kill('SIGTERM');
    await waitFor('the worker to stop', async () => worker.exitCode !== null || worker.signalCode !== null, 15_000);
    await page.click('#btn-requeue');
    await waitFor('200', async () =>
      (await page.getAttribute('#action-status', 'data-status')) === '200', 5_000);
    const after = await stats();
    check(after.dead === 0, `dead after requeue: ${after.dead}`);
    check(after.ready + after.running === FAILING_JOBS, `requeued jobs: ${JSON.stringify(after)}`);
    const before = await polls();
    await waitFor('the page to show dead 0', async () =>
      (await polls()) > before && (await value('q-dead')) === 0, 5_000);
    await page.click('#btn-resume');
    await startWorker();
    await waitFor('the requeued jobs to fail again', async () => {
      const s = await stats();
      return s.paused === false && s.dead === FAILING_JOBS;
    });
    await cancelFromThePage(page, frontend, redis);
    const unexpected = problems.filter((p) => !/status of 403/.test(p));
    check(unexpected.length === 0, `the page logged errors: ${unexpected.join('; ')}`);
    await memoryMode(browser);
  } finally {
    await browser.close();
  }
  log('passed');
}

try {
  await main();
} catch (e) {
  failed = true;
  console.error('[dashboard_test] FAILED:', e.message);
} finally {
  for (const { child } of children.reverse()) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  if (!failed) rmSync(dir, { recursive: true, force: true });
  else console.error(`[dashboard_test] kept ${dir}`);
}
process.exit(failed ? 1 : 0);
