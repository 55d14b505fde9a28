// The chat page at GET / in headless Chromium: load it, type a message, send it, and wait for
// the streamed reply to finish; the reply must equal what the API answers for the same
// conversation (greedy). Chromium is driven over --remote-debugging-pipe (DevTools protocol
// messages separated by NUL bytes on fds 3 and 4), so no extra npm package is needed.
// Prints a Check-style summary line; skips when chromium is absent.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { sleep, startServer } from './harness.mjs';

const browser = ['chromium', 'chromium-browser', 'google-chrome'].find(
  (b) => spawnSync('sh', ['-c', `command -v ${b}`]).status === 0);
if (!browser) {
  console.log('SKIP: tests/server/test_page.mjs: chromium is not installed');
  process.exit(0);
}

let server, chrome, profile;
// Chromium's helper processes may still write into the profile for a moment after the main
// process is killed, so wait for its exit and retry the removal instead of failing the test on it.
async function cleanup() {
  const exited = (p) => !p || p.exitCode !== null || p.signalCode !== null;
  if (!exited(chrome)) chrome.kill('SIGKILL');
  if (server && !exited(server.proc)) server.proc.kill('SIGKILL');
  for (let i = 0; i < 50 && !(exited(chrome) && (!server || exited(server.proc))); i++) await sleep(100);
  if (profile) {
    try {
      fs.rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    } catch (e) {
      console.log(`note: could not remove ${profile}: ${e.code}`);
    }
  }
}

async function run() {
  server = await startServer('models/stories260K.gguf', ['--temp', '0', '-n', '24']);
  const url = server.url;

  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'nllm-page-'));
  chrome = spawn(browser, ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-extensions', '--disable-dev-shm-usage', `--user-data-dir=${profile}`,
    '--remote-debugging-pipe', `${url}/`], { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] });
  const toChrome = chrome.stdio[3], fromChrome = chrome.stdio[4];
  let id = 0, buf = '';
  const pending = new Map();
  fromChrome.on('data', (d) => {
    buf += d.toString('utf8');
    let i;
    while ((i = buf.indexOf('\0')) >= 0) {
      const msg = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      if (msg.id && pending.has(msg.id)) {
        pending.get(msg.id)(msg);
        pending.delete(msg.id);
      }
    }
  });
  const send = (method, params = {}, sessionId) => new Promise((resolve, reject) => {
    const mid = ++id;
    pending.set(mid, (m) => (m.error ? reject(new Error(JSON.stringify(m.error))) : resolve(m.result)));
    toChrome.write(JSON.stringify({ id: mid, method, params, sessionId }) + '\0');
  });
  let target;
  for (let i = 0; i < 200 && !target; i++) {
    const { targetInfos } = await send('Target.getTargets');
    target = targetInfos.find((t) => t.type === 'page' && t.url.startsWith(url));
    if (!target) await sleep(50);
  }
  if (!target) throw new Error('no page target');
  const { sessionId } = await send('Target.attachToTarget', { targetId: target.targetId, flatten: true });
  const evaluate = async (expr) =>
    (await send('Runtime.evaluate', { expression: expr, awaitPromise: true, returnByValue: true },
      sessionId)).result.value;
  for (let i = 0; i < 200; i++) {
    if ((await evaluate('document.readyState')) === 'complete' &&
      (await evaluate('!!document.getElementById("send")'))) break;
    await sleep(50);
  }
  await evaluate(`document.getElementById('input').value = 'Tell me a story';
    document.getElementById('form').requestSubmit(); true`);
  let state = null;
  for (let i = 0; i < 400; i++) {
    state = await evaluate(`(() => { const m = document.querySelectorAll('.msg');
      const last = m[m.length - 1]; return last && last.classList.contains('msg') ?
      { n: m.length, state: last.dataset.state || null, text: last.textContent } : null; })()`);
    if (state && (state.state === 'done' || state.state === 'error')) break;
    await sleep(50);
  }
  const api = await (await fetch(`${url}/v1/chat/completions`, { method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'user', content: 'Tell me a story' }], stream: false }),
  })).json();
  const checks = [
    ['the page shows the user message and a reply', state && state.n === 2],
    ['the reply finished streaming', state && state.state === 'done'],
    ['the reply equals the API answer', state && state.text === api.choices[0].message.content &&
      state.text.length > 0],
  ];
  let failures = 0;
  for (const [name, ok] of checks) {
    if (!ok) {
      failures++;
      console.log(`tests/server/test_page.mjs: Failure: ${name}: ${JSON.stringify(state)} vs ` +
        JSON.stringify(api.choices && api.choices[0].message.content));
    } else console.log(`ok   ${name}`);
  }
  server.proc.kill('SIGTERM');
  return failures;
  // (chrome is closed in cleanup)
}

let failures = 3;
try {
  failures = await Promise.race([run(), sleep(60000).then(() => { throw new Error('timed out'); })]);
} catch (e) {
  console.log(`tests/server/test_page.mjs: Error: ${e.stack || e}`);
}
await cleanup();
console.log(`${Math.round((100 * (3 - failures)) / 3)}%: Checks: 3, Failures: ${failures}, Errors: 0`);
process.exit(failures ? 1 : 0);
