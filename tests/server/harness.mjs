// What every server test file shares: starting and stopping `nllm serve` on a free loopback
// port, a JSON POST, and a tiny harness that runs the registered tests and prints the
// Check-style summary line ("100%: Checks: N, Failures: F, Errors: 0") that tests/run_tests.sh
// counts. It imports no npm package: a file that wants the openai client passes its class in.
import { spawn } from 'node:child_process';
import path from 'node:path';

export const BUILD = process.env.NLLM_BUILD || 'build';
export const NLLM = `${BUILD}/nllm`;
export const TESTDATA = process.env.NLLM_TESTDATA || '../shared/testdata';
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const servers = []; // every server started, checked for sanitizer reports at the end

// Starts `nllm serve -m model --port 0 -t 1 ...args` and waits until it is ready. The result
// holds the process, its stderr so far (log), exited ({code, sig} once it has), port and url;
// with OpenAI (the openai package's class) also client (no API key) and clientWithKey(key).
// expectFail: a server that exits instead of getting ready is returned, not thrown.
export async function startServer(model, args = [], { OpenAI = null, expectFail = false } = {}) {
  const p = spawn(NLLM, ['serve', '-m', model, '--port', '0', '-t', '1', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const srv = { proc: p, log: '', exited: null, port: 0 };
  servers.push(srv);
  p.stderr.on('data', (d) => (srv.log += d));
  p.on('exit', (code, sig) => (srv.exited = { code, sig }));
  const t0 = Date.now();
  while (Date.now() - t0 < 60000 && !/ready:/.test(srv.log) && !srv.exited) await sleep(20);
  const m = srv.log.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
  if (m) srv.port = +m[1];
  if (!expectFail && !(m && /ready:/.test(srv.log)))
    throw new Error(`server did not start: ${srv.log}`);
  srv.url = `http://127.0.0.1:${srv.port}`;
  if (OpenAI) {
    srv.clientWithKey = (key) =>
      new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: key, maxRetries: 0, timeout: 60000 });
    srv.client = srv.clientWithKey('none');
  }
  return srv;
}

// SIGTERM, then SIGKILL after 15 s; returns {code, sig}.
export async function stopServer(srv) {
  if (!srv || srv.exited) return srv && srv.exited;
  srv.proc.kill('SIGTERM');
  const t0 = Date.now();
  while (!srv.exited && Date.now() - t0 < 15000) await sleep(20);
  if (!srv.exited) srv.proc.kill('SIGKILL');
  while (!srv.exited) await sleep(20);
  return srv.exited;
}

// POST of a JSON body (or a raw string); json is null when the reply is not JSON.
export async function postJson(url, body, headers = {}) {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: r.status, headers: r.headers, text, json };
}

const tests = [];
export const test = (name, fn) => tests.push({ name, fn });
export function assert(cond, msg) {
  if (!cond) throw new Error(msg || 'assertion failed');
}
export function eq(a, b, msg) {
  if (JSON.stringify(a) !== JSON.stringify(b))
    throw new Error(`${msg || 'not equal'}: ${JSON.stringify(a)} != ${JSON.stringify(b)}`);
}

// Runs setup, then every test in order (each bounded by testTimeoutMs against hangs), stops the
// servers still running (each must exit 0 on SIGTERM), fails on any sanitizer report in a
// server's log, prints the summary line and exits.
export async function runTests(file, { setup = async () => {}, testTimeoutMs = 300000 } = {}) {
  const name = `tests/server/${path.basename(file)}`;
  const t0 = Date.now();
  let failures = 0;
  try {
    await setup();
    for (const t of tests) {
      const s = Date.now();
      try {
        await Promise.race([t.fn(), sleep(testTimeoutMs).then(() => { throw new Error('timed out'); })]);
        console.log(`ok   ${t.name} (${Date.now() - s} ms)`);
      } catch (e) {
        failures++;
        console.log(`${name}: Failure: ${t.name}: ${e.stack || e}`);
      }
    }
    for (const srv of servers) {
      if (srv.exited) continue;
      const code = await stopServer(srv);
      if (code.code !== 0) {
        failures++;
        console.log(`${name}: Failure: server exit ${JSON.stringify(code)} on SIGTERM`);
      }
    }
    for (const srv of servers)
      if (/runtime error|Sanitizer|leaked/.test(srv.log)) {
        failures++;
        console.log(`${name}: Failure: sanitizer report:\n${srv.log}`);
      }
  } catch (e) {
    failures++;
    console.log(`${name}: Error: ${e.stack || e}`);
  } finally {
    for (const srv of servers) if (!srv.exited) srv.proc.kill('SIGKILL');
  }
  const n = tests.length;
  console.log(`${Math.round((100 * (n - failures)) / n)}%: Checks: ${n}, Failures: ${failures}, ` +
    `Errors: 0 (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  process.exit(failures ? 1 : 0);
}
