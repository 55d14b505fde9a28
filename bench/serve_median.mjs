// The table of bench/serve_vs_llama.sh: reads its JSON lines (one per server, round and client
// count; "nllm bench" lines carry the generation speed of `nllm bench`) on stdin and prints, per
// client count, the medians over the rounds as a Markdown table, then the server's overhead at
// one client against `nllm bench` generation.
//
//   node bench/serve_median.mjs < lines.jsonl
import { readFileSync } from 'node:fs';

const rows = readFileSync(0, 'utf8').split('\n')
  .filter((l) => l.startsWith('{'))
  .map((l) => JSON.parse(l));
const median = (xs) => {
  const s = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const of = (server, clients) => rows.filter((r) => r.server === server && r.clients === clients);
const range = (xs) => {
  const s = xs.filter(Number.isFinite);
  return s.length > 1 ? ` (${fmt(Math.min(...s))}-${fmt(Math.max(...s))})` : '';
};

const servers = ['nllm', 'llama-server'].filter((s) => rows.some((r) => r.server === s));
const clients = [...new Set(rows.filter((r) => r.server !== 'nllm bench').map((r) => r.clients))]
  .sort((a, b) => a - b);
const rounds = new Set(rows.map((r) => r.round)).size;

console.log(`\nmedians of ${rounds} round(s); tok/s: aggregate generated tokens per second ` +
  '(range over the rounds in brackets); errors: requests failed or streams cut, all rounds\n');
const head = ['clients'];
for (const s of servers) head.push(`tok/s ${s}`);
if (servers.length === 2) head.push('nllm / llama');
for (const s of servers) head.push(`TTFT p50 / p99 ms ${s}`);
for (const s of servers) head.push(`ITL p50 / p99 ms ${s}`);
for (const s of servers) head.push(`CPU ms/token ${s}`);
head.push(`errors ${servers.join(' / ')}`);
console.log(`| ${head.join(' | ')} |`);
console.log(`|${head.map(() => '---').join('|')}|`);
for (const n of clients) {
  const cells = [String(n)];
  const tps = {};
  for (const s of servers) {
    const xs = of(s, n).map((r) => r.tok_s);
    tps[s] = median(xs);
    cells.push(fmt(tps[s]) + range(xs));
  }
  if (servers.length === 2) {
    /* the median of each round's ratio: both servers of a round saw the same load */
    const ratios = of('nllm', n).map((a) => {
      const b = of('llama-server', n).find((r) => r.round === a.round);
      return b && b.tok_s > 0 ? a.tok_s / b.tok_s : NaN;
    });
    cells.push(`${fmt(median(ratios), 2)}x`);
  }
  for (const s of servers) {
    const r = of(s, n);
    cells.push(`${fmt(median(r.map((x) => x.ttft_p50_ms)), 0)} / ` +
      `${fmt(median(r.map((x) => x.ttft_p99_ms)), 0)}`);
  }
  for (const s of servers) {
    const r = of(s, n);
    cells.push(`${fmt(median(r.map((x) => x.itl_p50_ms)), 1)} / ` +
      `${fmt(median(r.map((x) => x.itl_p99_ms)), 1)}`);
  }
  for (const s of servers) cells.push(fmt(median(of(s, n).map((x) => x.cpu_ms_tok)), 2));
  cells.push(servers.map((s) => of(s, n).reduce((a, r) => a + r.errors, 0)).join(' / '));
  console.log(`| ${cells.join(' | ')} |`);
}

const bench = of('nllm bench', 1), one = of('nllm', 1);
if (bench.length && one.length) {
  /* per round: how much longer a token takes through the server than in nllm bench */
  const over = one.map((a) => {
    const b = bench.find((r) => r.round === a.round);
    return b && a.stream_tok_s > 0 ? 100 * (b.stream_tok_s / a.stream_tok_s - 1) : NaN;
  });
  const sb = bench.map((r) => r.stream_tok_s), ss = one.map((r) => r.stream_tok_s);
  console.log(`\none client: nllm serve generates ${fmt(median(ss), 2)} tok/s${range(ss)}, ` +
    `nllm bench ${fmt(median(sb), 2)} tok/s${range(sb)}: the server adds ` +
    `${fmt(median(over), 1)}% per token (median of the rounds; each round: ` +
    `${over.map((x) => fmt(x, 1)).join(', ')}%)`);
  const cb = median(bench.map((r) => r.cpu_ms_tok)), cs = median(one.map((r) => r.cpu_ms_tok));
  const cd = median(one.map((r) => r.busy_ms_tok));
  if (Number.isFinite(cb) && Number.isFinite(cs))
    console.log(`CPU time per generated token at one client (medians of the rounds): nllm bench ` +
      `${fmt(cb, 3)} ms; nllm serve, all its threads, ${fmt(cs, 3)} ms ` +
      `(${fmt(100 * (cs / cb - 1), 1)}% more)` + (Number.isFinite(cd) ? `, its busiest ` +
      `thread (decoding and sampling) ${fmt(cd, 3)} ms (${fmt(100 * (cd / cb - 1), 1)}% more)` : ''));
  /* where the rest of the decoding thread's wall time went */
  const wait = median(one.map((r) => r.busy_wait_ms_tok)), step = median(one.map((r) => r.step_ms));
  const gap = median(one.map((r) => r.gap_us));
  if (Number.isFinite(wait) || Number.isFinite(step))
    console.log(`decoding thread at one client (medians of the rounds): ready but waiting for a ` +
      `core ${fmt(wait, 3)} ms per token; a decode step ${fmt(step, 3)} ms of wall time, and ` +
      `${fmt(gap, 1)} us from the end of one step to the start of the next`);
}
