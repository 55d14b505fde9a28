// Tests of `nllm serve` on loopback: the official openai client, raw fetch and curl against
// servers started on free ports with the bundled model. Prints a Check-style summary line
// ("100%: Checks: N, Failures: F, Errors: 0") that tests/run_tests.sh counts.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import OpenAI from 'openai';

import {
  NLLM, assert, eq, postJson, runTests, sleep, startServer as start, stopServer, test,
} from './harness.mjs';

const MODEL = 'models/stories260K.gguf';
const startServer = (args = [], opts = {}) => start(MODEL, args, { OpenAI, ...opts });

async function metrics(srv) {
  const txt = await (await fetch(`${srv.url}/metrics`)).text();
  const get = (name) => {
    const m = txt.match(new RegExp(`^nllm_${name.replace(/[{}"=]/g, '\\$&')} (\\S+)$`, 'm'));
    return m ? Number(m[1]) : NaN;
  };
  return { txt, get };
}

const post = (srv, route, body, headers = {}) => postJson(`${srv.url}${route}`, body, headers);
function isErrorShape(j, status) {
  assert(j && j.error, `no error object (status ${status})`);
  for (const k of ['message', 'type', 'param', 'code'])
    assert(k in j.error, `error lacks '${k}': ${JSON.stringify(j)}`);
  assert(typeof j.error.message === 'string' && j.error.message.length > 0, 'empty message');
}

async function collectStream(stream) {
  let text = '', finish = null, usage = null, chunks = 0;
  for await (const c of stream) {
    chunks++;
    if (c.usage) usage = c.usage;
    const ch = c.choices && c.choices[0];
    if (!ch) continue;
    text += (ch.delta ? ch.delta.content : ch.text) || '';
    if (ch.finish_reason) finish = ch.finish_reason;
  }
  return { text, finish, usage, chunks };
}

let main; // -np 4 server shared by most tests

test('health, models and the chat page', async () => {
  const h = await fetch(`${main.url}/health`);
  eq(h.status, 200, 'health');
  const models = await main.client.models.list();
  eq(models.data[0].id, 'stories260K.gguf', 'model id');
  const page = await (await fetch(`${main.url}/`)).text();
  assert(page.includes('<html') && page.includes('/v1/chat/completions'), 'page');
  assert(!/(src|href)=["']?https?:/.test(page), 'the page loads nothing external');
});

test('completion (non-streamed) equals nllm run greedy', async () => {
  const r = await main.client.completions.create({
    model: 'stories260K.gguf', prompt: 'Once upon a time', max_tokens: 30, temperature: 0,
  });
  const run = spawnSync(NLLM, ['run', '-m', MODEL, '-p', 'Once upon a time', '-n', '30',
    '--temp', '0', '-t', '1'], { encoding: 'utf8' });
  eq('Once upon a time' + r.choices[0].text + '\n', run.stdout, 'same text as nllm run');
  eq(r.choices[0].finish_reason, 'length');
  eq(r.usage.completion_tokens, 30, 'completion tokens');
  eq(r.usage.prompt_tokens, 5, 'prompt tokens (BOS + 4)');
  eq(r.usage.total_tokens, 35);
});

test('chat streamed equals chat not streamed; include_usage', async () => {
  const req = { model: 'stories260K.gguf', temperature: 0, max_tokens: 24,
    messages: [{ role: 'system', content: 'Tell a story.' }, { role: 'user', content: 'A cat' }] };
  const whole = await main.client.chat.completions.create(req);
  const s = await collectStream(await main.client.chat.completions.create(
    { ...req, stream: true, stream_options: { include_usage: true } }));
  eq(s.text, whole.choices[0].message.content, 'streamed text');
  eq(s.finish, whole.choices[0].finish_reason, 'finish reason');
  eq(s.usage.completion_tokens, whole.usage.completion_tokens, 'usage');
  eq(s.usage.prompt_tokens, whole.usage.prompt_tokens, 'usage');
  eq(whole.object, 'chat.completion');
  eq(whole.choices[0].message.role, 'assistant');
});

test('streamed completion equals non-streamed', async () => {
  const req = { model: 'stories260K.gguf', prompt: 'The dog', max_tokens: 40, temperature: 0 };
  const whole = await main.client.completions.create(req);
  const s = await collectStream(await main.client.completions.create({ ...req, stream: true }));
  eq(s.text, whole.choices[0].text);
  assert(s.chunks > 3, 'streamed in several chunks');
});

test('stop strings across token boundaries are never sent', async () => {
  const base = { model: 'stories260K.gguf', prompt: 'Once upon a time', max_tokens: 40,
    temperature: 0, logprobs: 0 };
  const full = await main.client.completions.create(base);
  const toks = full.choices[0].logprobs.tokens, text = full.choices[0].text;
  // a stop made of the end of one token and the start of the next
  let k = toks.findIndex((t, i) => i > 2 && t.length >= 2 && toks[i + 1] && toks[i + 1].length >= 2);
  assert(k > 0, 'found two long tokens');
  const off = toks.slice(0, k).join('').length;
  const stop = toks[k].slice(-2) + toks[k + 1].slice(0, 2);
  const at = text.indexOf(stop);
  assert(at >= 0 && at <= off + toks[k].length, 'stop found in text');
  for (const stream of [false, true]) {
    const req = { ...base, stop: ['zzzz', stop], logprobs: null, stream };
    let got, finish;
    if (stream) {
      const s = await collectStream(await main.client.completions.create(req));
      got = s.text, finish = s.finish;
    } else {
      const r = await main.client.completions.create(req);
      got = r.choices[0].text, finish = r.choices[0].finish_reason;
    }
    eq(got, text.slice(0, at), `text before the stop (stream=${stream})`);
    eq(finish, 'stop');
  }
  // a single stop string
  const r = await post(main, '/v1/completions', { ...base, logprobs: undefined, stop: stop });
  eq(r.json.choices[0].text, text.slice(0, at));
});

test('max_tokens gives finish_reason length with exact usage', async () => {
  const r = await main.client.chat.completions.create({ model: 'stories260K.gguf',
    messages: [{ role: 'user', content: 'Hello' }], max_completion_tokens: 5, temperature: 0 });
  eq(r.choices[0].finish_reason, 'length');
  eq(r.usage.completion_tokens, 5);
  const t = await post(main, '/tokenize', { content: r.choices[0].message.content });
  assert(t.json.tokens.length >= 4 && t.json.tokens.length <= 6, 'about 5 tokens of text');
});

test('ignore_eos runs past the end-of-generation token to max_tokens', async () => {
  // stories260K never ends a story with its EOS, so a copy names '.' its EOS: greedy, the text
  // then ends before the first period
  const dot = (await post(main, '/tokenize', { content: 'Lily.' })).json.tokens.at(-1);
  const fs = await import('node:fs'), os = await import('node:os');
  const gguf = fs.readFileSync(MODEL), key = Buffer.from('tokenizer.ggml.eos_token_id');
  const at = gguf.indexOf(key) + key.length;
  eq(gguf.readUInt32LE(at), 4, 'the EOS id is a u32');
  gguf.writeUInt32LE(dot, at + 4);
  const file = `${os.tmpdir()}/nllm-eos-dot-${process.pid}.gguf`;
  fs.writeFileSync(file, gguf);
  const srv = await start(file, ['-np', '1'], { OpenAI });
  fs.unlinkSync(file);
  const base = { prompt: 'Once upon a time', temperature: 0, max_tokens: 60 };
  const ended = await post(srv, '/v1/completions', base);
  eq(ended.json.choices[0].finish_reason, 'stop', 'ends at the EOS');
  const n = ended.json.usage.completion_tokens, cut = ended.json.choices[0].text;
  assert(n > 3 && n < 40, `ended after ${n} tokens: ${cut}`);
  const r = await post(srv, '/v1/completions', { ...base, ignore_eos: true });
  eq(r.json.choices[0].finish_reason, 'length');
  eq(r.json.usage.completion_tokens, 60, 'every token generated');
  // greedy: the same tokens up to where the EOS was the best, then the best other token
  const text = r.json.choices[0].text;
  assert(text.startsWith(cut) && text.length > cut.length + 20, `goes on past the EOS: ${text}`);
  const s = await collectStream(await srv.client.completions.create({ ...base, ignore_eos: true,
    stream: true, stream_options: { include_usage: true } }));
  eq(s.text, text, 'streamed');
  eq(s.usage.completion_tokens, 60, 'streamed usage');
  const chat = await post(srv, '/v1/chat/completions', { messages: [{ role: 'user',
    content: 'Hi' }], ignore_eos: true, max_tokens: 50, temperature: 0 });
  eq([chat.json.choices[0].finish_reason, chat.json.usage.completion_tokens], ['length', 50],
    'chat');
  for (const bad of [{ ignore_eos: 'yes' }, { ignore_eos: true, grammar: 'root ::= "a"' },
    { ignore_eos: true, response_format: { type: 'json_object' } }]) {
    const e = await post(srv, '/v1/completions', { ...base, ...bad });
    eq(e.status, 400, JSON.stringify(bad));
    isErrorShape(e.json, 400);
    eq(e.json.error.param, 'ignore_eos');
  }
  eq((await stopServer(srv)).code, 0);
});

test('logprobs (chat and completions)', async () => {
  const r = await main.client.chat.completions.create({ model: 'stories260K.gguf',
    messages: [{ role: 'user', content: 'Hi' }], max_tokens: 6, temperature: 0,
    logprobs: true, top_logprobs: 3 });
  const c = r.choices[0].logprobs.content;
  eq(c.length, 6, 'one entry per token');
  for (const e of c) {
    assert(e.logprob <= 0, 'logprob <= 0');
    eq(e.top_logprobs.length, 3, 'three alternatives');
    eq(e.top_logprobs[0].token, e.token, 'greedy token is the most likely');
    assert(Array.isArray(e.bytes), 'bytes');
  }
  eq(c.map((e) => e.token).join(''), r.choices[0].message.content, 'tokens spell the text');
  const s = await collectStream(await main.client.chat.completions.create({
    model: 'stories260K.gguf', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 6,
    temperature: 0, logprobs: true, stream: true }));
  eq(s.text, r.choices[0].message.content);
  const cp = await main.client.completions.create({ model: 'stories260K.gguf',
    prompt: 'Once', max_tokens: 4, temperature: 0, logprobs: 2, echo: true });
  const lp = cp.choices[0].logprobs;
  eq(lp.tokens.length, 4);
  eq(lp.text_offset[0], 4, 'offsets count the echoed prompt');
  assert(cp.choices[0].text.startsWith('Once'), 'echo');
});

test('seeded sampling is reproducible; penalties accepted', async () => {
  const req = { model: 'stories260K.gguf', prompt: 'Once upon a time', max_tokens: 20,
    temperature: 1.0, top_p: 0.9, top_k: 40, min_p: 0.01, seed: 1234,
    presence_penalty: 0.5, frequency_penalty: 0.5 };
  const a = await main.client.completions.create(req);
  const b = await main.client.completions.create(req);
  eq(a.choices[0].text, b.choices[0].text, 'same seed, same text');
});

test('tokenize and detokenize (llama-server shapes)', async () => {
  const t = await post(main, '/tokenize', { content: 'Once upon a time', add_special: true });
  eq(t.json.tokens[0], 1, 'BOS with add_special');
  const d = await post(main, '/detokenize', { tokens: t.json.tokens.slice(1) });
  eq(d.json.content, 'Once upon a time');
  const p = await post(main, '/tokenize', { content: 'Once', with_pieces: true });
  eq(Object.keys(p.json.tokens[0]).sort(), ['id', 'piece']);
  const bad = await post(main, '/detokenize', { tokens: [99999] });
  eq(bad.status, 400);
  isErrorShape(bad.json, 400);
});

test('malformed requests give OpenAI error shapes', async () => {
  const msgs = [{ role: 'user', content: 'hi' }];
  const cases = [
    ['/v1/chat/completions', '{"messages": [', 400],
    ['/v1/chat/completions', '[1,2]', 400],
    ['/v1/chat/completions', '{}', 400],
    ['/v1/chat/completions', { messages: 'hi' }, 400],
    ['/v1/chat/completions', { messages: [] }, 400],
    ['/v1/chat/completions', { messages: [{ role: 'wizard', content: 'x' }] }, 400],
    ['/v1/chat/completions', { messages: [{ role: 'user', content: 5 }] }, 400],
    ['/v1/chat/completions', { messages: msgs, temperature: 'hot' }, 400],
    ['/v1/chat/completions', { messages: msgs, temperature: -1 }, 400],
    ['/v1/chat/completions', { messages: msgs, n: 2 }, 400],
    ['/v1/chat/completions', { messages: msgs, max_tokens: -1 }, 400],
    ['/v1/chat/completions', { messages: msgs, max_tokens: 1.5 }, 400],
    ['/v1/chat/completions', { messages: msgs, max_tokens: 0 }, 400],
    ['/v1/chat/completions', { messages: msgs, stream: 'yes' }, 400],
    ['/v1/chat/completions', { messages: msgs, stop: [1] }, 400],
    ['/v1/chat/completions', { messages: msgs, top_logprobs: 3 }, 400],
    ['/v1/chat/completions', { messages: msgs, max_tokens: 100000 }, 400],
    ['/v1/chat/completions', { messages: msgs, model: 'gpt-4o' }, 404],
    ['/v1/completions', { prompt: 7 }, 400],
    ['/v1/completions', { prompt: [] }, 400],
    ['/v1/completions', { prompt: ['a', 3] }, 400],
    ['/v1/completions', { prompt: Array(65).fill('a') }, 400],
    ['/v1/completions', { prompt: [1, -2] }, 400],
    ['/v1/completions', { prompt: [1, 100000] }, 400],
    ['/v1/completions', { prompt: 'x', logprobs: 9 }, 400],
    ['/v1/completions', { prompt: '' , echo: 1}, 400],
    ['/tokenize', { content: 5 }, 400],
    ['/nope', {}, 404],
  ];
  for (const [path, body, status] of cases) {
    const r = await post(main, path, body);
    eq(r.status, status, `${path} ${JSON.stringify(body)}`);
    isErrorShape(r.json, status);
  }
  const m = await fetch(`${main.url}/v1/chat/completions`);
  eq(m.status, 405, 'GET on a POST route');
  isErrorShape(await m.json(), 405);
  // over the body limit: refused from the Content-Length before the body is read...
  const head = await new Promise((resolve) => {
    const sock = net.connect(main.port, '127.0.0.1', () =>
      sock.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5242880\r\n\r\n{'));
    let got = '';
    sock.on('data', (d) => (got += d));
    sock.on('error', () => {});
    sock.on('close', () => resolve(got));
  });
  assert(/^HTTP\/1\.1 413/.test(head), head);
  isErrorShape(JSON.parse(head.slice(head.indexOf('\r\n\r\n') + 4)), 413);
  // ...and a chunked body when it passes the limit
  const big = spawnSync('curl', ['-s', '--max-time', '30', '-w', '\n%{http_code}', '-H',
    'Transfer-Encoding: chunked', '--data-binary', '@-', `${main.url}/v1/completions`],
  { input: JSON.stringify({ prompt: 'x'.repeat(5 << 20) }), encoding: 'utf8' });
  const [bigBody, bigCode] = big.stdout.split('\n');
  eq(bigCode, '413', 'chunked body over the limit');
  isErrorShape(JSON.parse(bigBody), 413);
  // the openai client raises typed errors from these shapes
  try {
    await main.client.chat.completions.create({ model: 'stories260K.gguf', messages: [] });
    assert(false, 'no error');
  } catch (e) {
    eq(e.status, 400);
    assert(/messages/.test(e.message), e.message);
  }
});

test('a prompt that does not fit the context is 400 with the numbers', async () => {
  const small = await startServer(['-np', '1', '-c', '64']);
  const r = await post(small, '/v1/completions', { prompt: 'Once upon a time', max_tokens: 100 });
  eq(r.status, 400);
  assert(/5 tokens.*100.*64/.test(r.json.error.message), r.json.error.message);
  eq(r.json.error.code, 'context_length_exceeded');
  // without max_tokens it generates until the context is full
  const f = await post(small, '/v1/completions', { prompt: 'Once upon a time', temperature: 0 });
  eq(f.json.choices[0].finish_reason, 'length');
  eq(f.json.usage.total_tokens, 64);
  eq((await stopServer(small)).code, 0);
});

test('16 concurrent greedy streams equal each alone', async () => {
  const prompts = Array.from({ length: 16 }, (_, i) => `Once upon a time there was a ${['cat',
    'dog', 'girl', 'boy', 'bird', 'fish', 'king', 'frog'][i % 8]} ${i < 8 ? 'who' : 'that'}`);
  const req = (p) => ({ model: 'stories260K.gguf', prompt: p, max_tokens: 48, temperature: 0,
    stream: true });
  const alone = [];
  for (const p of prompts)
    alone.push((await collectStream(await main.client.completions.create(req(p)))).text);
  assert(new Set(alone).size > 4, 'different prompts, different texts');
  // 16 slots: all at once; the 4-slot server: 4 at a time with 12 queued
  const wide = await startServer(['-np', '16', '-c', '256']);
  for (const srv of [wide, main]) {
    const together = await Promise.all(prompts.map(async (p) =>
      (await collectStream(await srv.client.completions.create(req(p)))).text));
    for (let i = 0; i < 16; i++) eq(together[i], alone[i], `stream ${i}`);
  }
  eq((await stopServer(wide)).code, 0);
});

test('prefix cache: a repeated prompt reuses its KV', async () => {
  const prompt = 'Once upon a time there was a little girl named Lily who loved flowers';
  const req = { model: 'stories260K.gguf', prompt, max_tokens: 8, temperature: 0 };
  const a = await main.client.completions.create(req);
  const b = await main.client.completions.create(req);
  eq(b.choices[0].text, a.choices[0].text);
  eq(b.usage.prompt_tokens_details.cached_tokens, b.usage.prompt_tokens - 1,
    'all but the last prompt token cached');
});

test('prefix cache: a prompt shares the prefix of another running request', async () => {
  const srv = await startServer(['-np', '2', '-c', '1024']);
  const prompt = 'Once upon a time there was a little girl named Lily who loved flowers';
  const ac = new AbortController();
  const r = await fetch(`${srv.url}/v1/completions`, { method: 'POST', signal: ac.signal,
    body: JSON.stringify({ prompt, max_tokens: 900, stream: true, temperature: 1, seed: 3 }) });
  const rd = r.body.getReader();
  await rd.read();
  const m = await metrics(srv);
  eq(m.get('requests_running'), 1, 'the first request is running');
  // the other slot is empty: its whole prefix comes from the running request's cells
  const b = await srv.client.completions.create({ model: 'stories260K.gguf',
    prompt: prompt + ' and trees', max_tokens: 4, temperature: 0 });
  const t = await post(srv, '/tokenize', { content: prompt, add_special: true });
  eq(b.usage.prompt_tokens_details.cached_tokens, t.json.tokens.length, 'shared prefix');
  const alone = await main.client.completions.create({ model: 'stories260K.gguf',
    prompt: prompt + ' and trees', max_tokens: 4, temperature: 0 });
  eq(b.choices[0].text, alone.choices[0].text, 'same text as without sharing');
  ac.abort();
  eq((await stopServer(srv)).code, 0);
});

test('a long prompt is evaluated in chunks between the other streams\' tokens', async () => {
  const srv = await startServer(['-np', '2', '-c', '2048', '-b', '16']);
  const ac = new AbortController();
  const r = await fetch(`${srv.url}/v1/completions`, { method: 'POST', signal: ac.signal,
    body: JSON.stringify({ prompt: 'Once', max_tokens: 2000, stream: true, temperature: 1,
      seed: 9 }) });
  const rd = r.body.getReader();
  const times = [];
  let reading = true;
  const pump = (async () => {
    const dec = new TextDecoder();
    while (reading) {
      const { value, done } = await rd.read().catch(() => ({ done: true }));
      if (done) break;
      const now = performance.now();
      for (let k = (dec.decode(value).match(/^data: /gm) || []).length; k > 0; k--) times.push(now);
    }
  })();
  await sleep(50);
  const long = 'Once upon a time there was a dog. '.repeat(200);
  const t0 = performance.now();
  const b = await post(srv, '/v1/completions', { prompt: long, max_tokens: 1 });
  const t1 = performance.now();
  eq(b.status, 200);
  assert(b.json.usage.prompt_tokens > 1500, `long prompt: ${b.json.usage.prompt_tokens} tokens`);
  const during = times.filter((t) => t >= t0 && t <= t1);
  let gap = 0;
  for (let i = 1; i < during.length; i++) gap = Math.max(gap, during[i] - during[i - 1]);
  // Measured on the busy 2-core VM: the longest pause of the running stream while a ~1,600
  // token prompt is read is 20-28 ms in chunks of 16, 0.9-1.2 s with -b 2048 (one chunk).
  assert(during.length >= 10, `the running stream got ${during.length} tokens meanwhile`);
  assert(gap < 300, `the running stream paused ${gap.toFixed(0)} ms`);
  reading = false;
  ac.abort();
  await pump;
  eq((await stopServer(srv)).code, 0);
});

test('API key: 401 without or with a wrong key, constant-shape errors', async () => {
  const srv = await startServer(['-np', '1', '--api-key', 'sekrit-key']);
  const req = { model: 'stories260K.gguf', prompt: 'Once', max_tokens: 2 };
  for (const key of ['none', 'sekrit-kez', 'sekrit-key-longer', 'sekrit']) {
    try {
      await srv.clientWithKey(key).completions.create(req);
      assert(false, `key ${key} accepted`);
    } catch (e) {
      eq(e.status, 401, `key ${key}`);
    }
  }
  const raw = await post(srv, '/v1/completions', req);
  eq(raw.status, 401);
  isErrorShape(raw.json, 401);
  const ok = await srv.clientWithKey('sekrit-key').completions.create(req);
  eq(ok.usage.completion_tokens, 2);
  eq((await fetch(`${srv.url}/health`)).status, 200, 'health needs no key');
  eq((await stopServer(srv)).code, 0);
});

test('a client that disconnects frees its slot at once', async () => {
  const srv = await startServer(['-np', '1', '-c', '2048']);
  const ac = new AbortController();
  const r = await fetch(`${srv.url}/v1/completions`, {
    method: 'POST', signal: ac.signal, headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 2000, stream: true,
      temperature: 1, seed: 1 }),
  });
  const rd = r.body.getReader();
  await rd.read();
  eq((await metrics(srv)).get('requests_running'), 1, 'running while streaming');
  ac.abort();
  const t0 = Date.now();
  let m;
  do {
    await sleep(20);
    m = await metrics(srv);
  } while (m.get('requests_running') !== 0 && Date.now() - t0 < 3000);
  eq(m.get('requests_running'), 0, 'slot freed');
  eq(m.get('requests_total{outcome="cancelled"}'), 1, 'counted as cancelled');
  assert(m.get('generation_tokens_total') < 1990, 'stopped generating');
  // non-streamed requests are cancelled the same way
  const ac2 = new AbortController();
  const p = fetch(`${srv.url}/v1/completions`, { method: 'POST', signal: ac2.signal,
    body: JSON.stringify({ prompt: 'Once', max_tokens: 2000, temperature: 1, seed: 2 }) })
    .catch(() => null);
  await sleep(100);
  ac2.abort();
  await p;
  const t1 = Date.now();
  do {
    await sleep(20);
    m = await metrics(srv);
  } while (m.get('requests_running') !== 0 && Date.now() - t1 < 3000);
  eq(m.get('requests_running'), 0, 'slot freed (non-streamed)');
  eq((await stopServer(srv)).code, 0);
});

test('a stream\'s connection thread runs as SCHED_BATCH (never preempts the decoding thread on wake-up)', async () => {
  const r = await fetch(`${main.url}/v1/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'Once', max_tokens: 400, stream: true, ignore_eos: true }),
  });
  const rd = r.body.getReader();
  await rd.read();
  // /proc/PID/task/TID/sched: "policy : 3" is SCHED_BATCH, 0 SCHED_OTHER
  const policies = {};
  const dir = `/proc/${main.proc.pid}/task`;
  for (const tid of readdirSync(dir)) {
    let comm, sched;
    try {
      comm = readFileSync(`${dir}/${tid}/comm`, 'utf8').trim();
      sched = readFileSync(`${dir}/${tid}/sched`, 'utf8');
    } catch {
      continue; /* a thread that ended meanwhile */
    }
    const m = sched.match(/^policy\s*:\s*(\d+)/m);
    (policies[comm] ||= []).push(m ? Number(m[1]) : -1);
  }
  await rd.cancel();
  assert(policies['MHD-connection'] && policies['MHD-connection'].includes(3),
    `a connection thread is SCHED_BATCH: ${JSON.stringify(policies)}`);
  eq(Math.max(...policies.nllm), 0, 'the decoding thread stays SCHED_OTHER');
});

test('overload gives 429 with Retry-After', async () => {
  // The two held streams must outlive the checks on a busy host: a 16k context lets them run
  // for seconds (they are aborted at the end) instead of ending at the model's 512 positions.
  const srv = await startServer(['-np', '1', '--queue', '1', '-c', '16384']);
  const streams = [];
  for (let i = 0; i < 2; i++) {
    const ac = new AbortController();
    const r = await fetch(`${srv.url}/v1/completions`, { method: 'POST', signal: ac.signal,
      body: JSON.stringify({ prompt: 'Once', max_tokens: 16000, stream: true, seed: i,
        temperature: 1 }) });
    streams.push({ ac, r });
  }
  await sleep(50);
  const m = await metrics(srv);
  eq([m.get('requests_running'), m.get('requests_waiting')], [1, 1], 'one running, one waiting');
  const r = await post(srv, '/v1/completions', { prompt: 'Once', max_tokens: 2 });
  eq(r.status, 429);
  eq(r.headers.get('retry-after'), '1');
  isErrorShape(r.json, 429);
  try {
    await srv.client.completions.create({ model: 'stories260K.gguf', prompt: 'x', max_tokens: 1 });
    assert(false, 'no 429');
  } catch (e) {
    eq(e.status, 429);
  }
  // a list of prompts is queued whole or not at all: with the slot busy and its one queue
  // place free, a list of 2 does not fit, and its first prompt must not stay queued
  streams[1].ac.abort();
  const waitFor = async (running, waiting) => {
    const t = Date.now();
    let mm;
    do {
      await sleep(30);
      mm = await metrics(srv);
    } while ((mm.get('requests_running') !== running || mm.get('requests_waiting') !== waiting) &&
      Date.now() - t < 5000);
    eq([mm.get('requests_running'), mm.get('requests_waiting')], [running, waiting], 'load');
  };
  await waitFor(1, 0);
  const list = await post(srv, '/v1/completions', { prompt: ['a', 'b'], max_tokens: 2 });
  eq(list.status, 429, 'a list that does not fit');
  isErrorShape(list.json, 429);
  await waitFor(1, 0);
  streams[0].ac.abort();
  await waitFor(0, 0);
  const two = await post(srv, '/v1/completions', { prompt: ['a', 'b'], max_tokens: 2 });
  eq(two.status, 200, 'a list that fits');
  eq(two.json.choices.length, 2);
  eq((await stopServer(srv)).code, 0);
});

test('bursts on 1 slot + 1 queue place: every request answered (none lost in the queue)', async () => {
  // submits faster than the scheduler moves jobs into slots once overwrote queued jobs
  const srv = await startServer(['-np', '1', '--queue', '1']);
  const answer = async (body) => {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 10000);
    try {
      const r = await fetch(`${srv.url}/v1/completions`, { method: 'POST', signal: ac.signal,
        headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      await r.text();
      return r.status;
    } catch {
      return 'no answer';
    } finally {
      clearTimeout(timer);
    }
  };
  const seen = new Set();
  for (let i = 0; i < 15; i++)
    seen.add(await answer({ prompt: ['a', 'b', 'c'], max_tokens: 2 }));
  for (let i = 0; i < 4; i++)
    for (const st of await Promise.all(Array.from({ length: 6 }, () =>
      answer({ prompt: 'Once', max_tokens: 2 }))))
      seen.add(st);
  for (const st of seen) assert(st === 200 || st === 429, `status ${st}`);
  eq((await stopServer(srv)).code, 0);
});

test('SIGTERM drains running streams, then exits 0', async () => {
  const srv = await startServer(['-np', '2']);
  const s = collectStream(await srv.client.completions.create({ model: 'stories260K.gguf',
    prompt: 'Once upon a time', max_tokens: 300, temperature: 0, stream: true }));
  await sleep(30);
  srv.proc.kill('SIGTERM');
  await sleep(100);
  const h = await fetch(`${srv.url}/health`).then((r) => r.status).catch(() => 'refused');
  assert(h === 503 || h === 'refused', `health while draining: ${h}`);
  const done = await s;
  eq(done.finish, 'length', 'the running stream finished');
  const t0 = Date.now();
  while (!srv.exited && Date.now() - t0 < 10000) await sleep(20);
  eq(srv.exited && srv.exited.code, 0, 'exit status');
  assert(/draining/.test(srv.log) && /stopped/.test(srv.log), srv.log);
});

test('a slow client is dropped after --timeout without holding a slot', async () => {
  const srv = await startServer(['-np', '1', '--timeout', '2']);
  const sock = net.connect(srv.port, '127.0.0.1');
  let closed = false;
  sock.on('close', () => (closed = true));
  sock.on('error', () => {});
  await new Promise((r) => sock.on('connect', r));
  sock.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n{');
  const t0 = Date.now();
  const trickle = setInterval(() => sock.write(' '), 400);
  // meanwhile the slot serves others
  const r = await srv.client.completions.create({ model: 'stories260K.gguf', prompt: 'Once',
    max_tokens: 3 });
  eq(r.usage.completion_tokens, 3);
  while (!closed && Date.now() - t0 < 8000) await sleep(50);
  clearInterval(trickle);
  assert(closed, 'connection closed');
  assert(Date.now() - t0 < 4500, `closed after ${Date.now() - t0} ms`);
  eq((await stopServer(srv)).code, 0);
});

test('a client trickling its request headers is dropped after --header-timeout', async () => {
  const srv = await startServer(['-np', '1', '--header-timeout', '2']);
  const sock = net.connect(srv.port, '127.0.0.1');
  let closed = false;
  sock.on('close', () => (closed = true));
  sock.on('error', () => {});
  await new Promise((r) => sock.on('connect', r));
  sock.write('GET /health HTTP/1.1\r\nHost: x\r\n');
  const t0 = Date.now();
  let k = 0; // one header byte every 300 ms: never idle, never done
  const trickle = setInterval(() => sock.write(k++ % 2 ? 'a' : 'X-'), 300);
  const r = await srv.client.completions.create({ model: 'stories260K.gguf', prompt: 'Once',
    max_tokens: 3 });
  eq(r.usage.completion_tokens, 3, 'others are served meanwhile');
  while (!closed && Date.now() - t0 < 8000) await sleep(50);
  clearInterval(trickle);
  assert(closed, 'connection closed');
  const dt = Date.now() - t0;
  assert(dt >= 1500 && dt < 4500, `closed after ${dt} ms`);
  // a quick client on a kept-alive connection is unaffected
  eq((await fetch(`${srv.url}/health`)).status, 200, 'health');
  eq((await stopServer(srv)).code, 0);
});

test('--max-conns: a connection past the limit waits until another closes', async () => {
  const srv = await startServer(['-np', '1', '--max-conns', '2']);
  // raw keep-alive connections: each asks /health once and stays open
  const ask = () => {
    const sock = net.connect(srv.port, '127.0.0.1',
      () => sock.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'));
    const served = new Promise((resolve) => {
      let got = '';
      sock.on('data', (d) => {
        got += d;
        if (got.includes('"status":"ok"')) resolve(true);
      });
      sock.on('error', () => {});
      sock.on('close', () => resolve(false));
    });
    return { sock, served };
  };
  const a = ask(), b = ask();
  eq([await a.served, await b.served], [true, true], 'two served');
  const c = ask();
  const early = await Promise.race([c.served, sleep(500).then(() => 'waiting')]);
  eq(early, 'waiting', 'the third is not served while two are open');
  a.sock.destroy();
  eq(await Promise.race([c.served, sleep(10000).then(() => 'still waiting')]), true,
    'served once one has closed');
  for (const x of [b, c]) x.sock.destroy();
  eq((await stopServer(srv)).code, 0);
});

test('completions with a list of prompts: one choice each, as each alone', async () => {
  const prompts = ['Once upon a time', 'The little dog', 'Lily and Ben'];
  const alone = [];
  for (const p of prompts)
    alone.push(await main.client.completions.create({ model: 'stories260K.gguf', prompt: p,
      max_tokens: 12, temperature: 0 }));
  const r = await main.client.completions.create({ model: 'stories260K.gguf', prompt: prompts,
    max_tokens: 12, temperature: 0 });
  eq(r.choices.map((c) => c.index), [0, 1, 2], 'indexes');
  eq(r.choices.map((c) => c.text), alone.map((a) => a.choices[0].text), 'texts');
  eq(r.choices.map((c) => c.finish_reason), ['length', 'length', 'length'], 'finish');
  eq(r.usage.completion_tokens, 36, 'usage sums the prompts');
  eq(r.usage.prompt_tokens, alone.reduce((n, a) => n + a.usage.prompt_tokens, 0), 'prompt tokens');
  // token-id prompts, streamed: the chunks of each choice carry its index
  const ids = [[1, 403, 407], [1, 365]];
  const single = await Promise.all(ids.map((p) => main.client.completions.create({
    model: 'stories260K.gguf', prompt: p, max_tokens: 6, temperature: 0 })));
  const stream = await main.client.completions.create({ model: 'stories260K.gguf', prompt: ids,
    max_tokens: 6, temperature: 0, stream: true, stream_options: { include_usage: true } });
  const text = ['', ''], finish = [null, null];
  let usage = null;
  const seenIds = new Set();
  for await (const ch of stream) {
    seenIds.add(ch.id);
    if (ch.usage) usage = ch.usage;
    for (const c of ch.choices) {
      text[c.index] += c.text;
      if (c.finish_reason) finish[c.index] = c.finish_reason;
    }
  }
  eq(text, single.map((a) => a.choices[0].text), 'streamed texts');
  eq(finish, ['length', 'length'], 'streamed finish');
  eq(usage.completion_tokens, 12, 'streamed usage');
  eq(seenIds.size, 1, 'one response id');
});

test('metrics: gauges, counters and histograms', async () => {
  const { txt, get } = await metrics(main);
  for (const name of ['requests_running', 'requests_waiting', 'kv_cache_usage_ratio',
    'prompt_tokens_total', 'generation_tokens_total'])
    assert(Number.isFinite(get(name)), `metric ${name}`);
  assert(get('generation_tokens_total') > 100, 'tokens counted');
  assert(/nllm_time_to_first_token_seconds_bucket\{le="\+Inf"\} \d+/.test(txt), 'ttft');
  assert(/nllm_time_per_output_token_seconds_count \d+/.test(txt), 'tpot');
  assert(/# TYPE nllm_requests_running gauge/.test(txt), 'types');
  // the scheduler's own time: one decode step per generated token after the prompt's (which
  // samples the first), wall time in and between steps
  const before = await metrics(main);
  const r = await post(main, '/v1/completions', { prompt: 'Once', max_tokens: 20,
    temperature: 0, ignore_eos: true });
  eq(r.json.usage.completion_tokens, 20, 'tokens');
  const after = await metrics(main);
  eq(after.get('decode_steps_total') - before.get('decode_steps_total'), 20, 'one step a token');
  assert(after.get('decode_step_seconds_total') > before.get('decode_step_seconds_total'),
    'step time counted');
  const gap = after.get('decode_gap_seconds_total') - before.get('decode_gap_seconds_total');
  assert(gap >= 0 && gap < 10, `gap time counted (${gap} s)`);
  assert(/# TYPE nllm_decode_gap_seconds_total counter/.test(after.txt), 'gap type');
});

test('curl: streamed chat ends with data: [DONE]; plain completion', async () => {
  const body = JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5,
    temperature: 0, stream: true });
  const r = spawnSync('curl', ['-sN', '--max-time', '20', `${main.url}/v1/chat/completions`,
    '-H', 'Content-Type: application/json', '-d', body], { encoding: 'utf8' });
  eq(r.status, 0, 'curl ran');
  const events = r.stdout.split('\n\n').filter((e) => e.length);
  eq(events[events.length - 1], 'data: [DONE]', 'last event');
  const first = JSON.parse(events[0].slice(6));
  eq(first.choices[0].delta.role, 'assistant');
  const c = spawnSync('curl', ['-s', '--max-time', '20', '-w', '\n%{http_code}',
    `${main.url}/v1/completions`, '-d', '{"prompt":"Once","max_tokens":3}'], { encoding: 'utf8' });
  const [json, code] = c.stdout.split('\n');
  eq(code, '200');
  eq(JSON.parse(json).usage.completion_tokens, 3);
});

test('a real-vocabulary model with a template family (testdata llama-2-tiny-random)', async () => {
  const td = process.env.NLLM_TESTDATA || '../shared/testdata';
  const gguf = `${td}/models/llama-2-tiny-random/llama-2-tiny-random.gguf`;
  const fs = await import('node:fs');
  if (!fs.existsSync(gguf)) {
    console.log(`SKIP: ${gguf} is absent`);
    return;
  }
  const srv = await startServer(['-m', gguf, '-np', '2', '-c', '256', '--chat-template', 'llama2',
    '--alias', 'tiny']);
  const req = { model: 'tiny', temperature: 0, max_tokens: 12, logprobs: true, top_logprobs: 2,
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Héllo ✓' }] };
  const whole = await srv.client.chat.completions.create(req);
  const s = await collectStream(await srv.client.chat.completions.create({ ...req, stream: true }));
  eq(s.text, whole.choices[0].message.content, 'stream equals whole');
  eq(whole.choices[0].logprobs.content.length, whole.usage.completion_tokens);
  const t = await post(srv, '/tokenize', { content: '[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHéllo ✓ [/INST]', add_special: true });
  assert(Math.abs(t.json.tokens.length - whole.usage.prompt_tokens) <= 2,
    `prompt tokens ${whole.usage.prompt_tokens} vs the rendered template ${t.json.tokens.length}`);
  eq((await stopServer(srv)).code, 0);
});

// ---------------------------------------------------------------- run
await runTests(import.meta.url, {
  setup: async () => (main = await startServer(['-np', '4', '--queue', '32'])),
  testTimeoutMs: 60000,
});
