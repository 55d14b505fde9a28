// Load generator for `nllm serve` (or any OpenAI-compatible server) on loopback: N concurrent
// clients each send streamed completions one after another; reports aggregate generated
// tokens/s, time to first token (TTFT) and inter-token latency (ITL) percentiles per client
// count, and the generation speed of one stream (stream_tok_s: chunks after the first over the
// time from the first to the last, which at one client is the server's decode speed and is what
// `nllm bench` generation compares with). Bounded: every level stops after --requests requests
// per client or --seconds.
//
//   node bench/serve_load.mjs [--url http://127.0.0.1:8080 | --model M [-np N] [-t T] [-c C]]
//        [--clients 1,4,16,64] [--requests 4] [--max-tokens 64] [--seconds 60]
//        [--prompt TEXT | --prompt-ids 1,2,3] [--temperature 0.8] [--ignore-eos] [--json]
//        [--warmup 1] [--ready-file F --go-file G]
// --ignore-eos asks the server to never end a reply early (llama-server's field, which nllm serve
// also takes), so every request generates exactly --max-tokens tokens and two servers are
// compared on the same token counts. A stream that ends without "data: [DONE]" or a request that
// fails counts in "errors" (its tokens still count if its usage arrived).
// Without --url it starts build/nllm serve itself (-np defaults to the largest client count).
// Before the first level the client sends --warmup requests (default 1) and discards them: node
// loads and compiles its HTTP client on the first fetch, hundreds of milliseconds of CPU that
// would otherwise compete with the server for a core during the first timed stream. With
// --ready-file and --go-file it then creates F and waits for G to exist before the first level
// (bench/serve_vs_llama.sh reads the server's counters in between).
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : def;
};
const clientsList = opt('--clients', '1,4,16,64').split(',').map(Number);
const perClient = +opt('--requests', '4');
const maxTokens = +opt('--max-tokens', '64');
const seconds = +opt('--seconds', '60');
const prompt = opt('--prompt-ids', null) !== null
  ? opt('--prompt-ids').split(',').map(Number) : opt('--prompt', 'Once upon a time');
const temperature = +opt('--temperature', '0.8');
const ignoreEos = args.includes('--ignore-eos');
const json = args.includes('--json');
const warmup = +opt('--warmup', '1');
const readyFile = opt('--ready-file', null), goFile = opt('--go-file', null);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let url = opt('--url', null), server = null;
if (!url) {
  const np = opt('-np', String(Math.max(...clientsList)));
  const a = ['serve', '-m', opt('--model', 'models/stories260K.gguf'), '--port', '0', '-np', np,
    '--queue', '1024'];
  if (opt('-t')) a.push('-t', opt('-t'));
  if (opt('-c')) a.push('-c', opt('-c'));
  server = spawn(`${process.env.NLLM_BUILD || 'build'}/nllm`, a, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  server.stderr.on('data', (d) => (log += d));
  const t0 = Date.now();
  while (!/ready:/.test(log)) {
    if (Date.now() - t0 > 120000 || server.exitCode !== null) throw new Error(`server: ${log}`);
    await sleep(50);
  }
  url = `http://127.0.0.1:${log.match(/:(\d+)\n/)[1]}`;
}

const pct = (xs, p) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function oneRequest(stats, seed) {
  const t0 = performance.now();
  const body = { prompt, max_tokens: maxTokens, temperature, seed, stream: true,
    stream_options: { include_usage: true } };
  if (ignoreEos) body.ignore_eos = true;
  let first = null, last = null, chunks = 0, ended = false;
  try {
    const r = await fetch(`${url}/v1/completions`, { method: 'POST',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    if (r.status !== 200) {
      stats.errors++;
      await r.text();
      return;
    }
    const rd = r.body.getReader(), dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await rd.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (ev === 'data: [DONE]') ended = true;
        if (!ev.startsWith('data: ') || ended) continue;
        const j = JSON.parse(ev.slice(6));
        if (j.usage) stats.tokens += j.usage.completion_tokens;
        const c = j.choices && j.choices[0];
        if (!c || !c.text) continue;
        const now = performance.now();
        if (last === null) stats.ttft.push(now - t0), first = now;
        else stats.itl.push(now - last);
        last = now;
        chunks++;
      }
    }
  } catch {
    ended = false; /* a connection reset mid-stream */
  }
  if (chunks > 1) stats.streamChunks += chunks - 1, stats.streamMs += last - first;
  if (ended) stats.requests++;
  else stats.errors++;
}

for (let k = 0; k < warmup; k++)
  await oneRequest({ tokens: 0, requests: 0, errors: 0, ttft: [], itl: [], streamChunks: 0,
    streamMs: 0 }, 999999 - k);
if (readyFile) writeFileSync(readyFile, '');
for (const t0 = Date.now(); goFile && !existsSync(goFile) && Date.now() - t0 < 60000;) await sleep(10);

const results = [];
for (const n of clientsList) {
  const stats = { tokens: 0, requests: 0, errors: 0, ttft: [], itl: [], streamChunks: 0,
    streamMs: 0 };
  const deadline = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: n }, async (_, c) => {
    for (let k = 0; k < perClient && performance.now() < deadline; k++)
      await oneRequest(stats, c * 1000 + k);
  }));
  const wall = (performance.now() - t0) / 1000;
  const row = { clients: n, requests: stats.requests, errors: stats.errors, tokens: stats.tokens,
    seconds: +wall.toFixed(3), tok_s: +(stats.tokens / wall).toFixed(1),
    stream_tok_s: +(stats.streamMs > 0 ? (1000 * stats.streamChunks) / stats.streamMs : NaN).toFixed(2),
    ttft_p50_ms: +pct(stats.ttft, 50).toFixed(2), ttft_p99_ms: +pct(stats.ttft, 99).toFixed(2),
    itl_p50_ms: +pct(stats.itl, 50).toFixed(2), itl_p99_ms: +pct(stats.itl, 99).toFixed(2) };
  results.push(row);
  if (!json)
    console.log(`clients ${String(n).padStart(3)}: ${String(row.tok_s).padStart(8)} tok/s (one stream ${row.stream_tok_s})  ` +
      `TTFT p50 ${row.ttft_p50_ms} ms p99 ${row.ttft_p99_ms} ms  ` +
      `ITL p50 ${row.itl_p50_ms} ms p99 ${row.itl_p99_ms} ms  (${row.requests} requests, ` +
      `${row.tokens} tokens, ${row.errors} errors, ${row.seconds} s)`);
}
if (json) console.log(JSON.stringify(results, null, 1));
if (server) {
  server.kill('SIGTERM');
  await new Promise((r) => server.on('exit', r));
}
