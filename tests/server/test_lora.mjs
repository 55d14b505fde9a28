// LoRA adapters through nllm serve: adapters loaded at start (--lora, --lora-scaled), listed by
// GET /lora-adapters, picked per request with llama-server's "lora": [{id, scale}]. Each
// greedy completion must produce the golden ids of ../shared/testdata/lora for its scales,
// also when requests with different scales arrive together. Prints a Check-style summary line.
import { readFileSync } from 'node:fs';

import { TESTDATA as TD, assert, postJson, runTests, startServer, test } from './harness.mjs';


function golden(path) {
  const txt = readFileSync(`${TD}/${path}`, 'utf8');
  const ids = (k) => txt.match(new RegExp(`^${k}: (.*)$`, 'm'))[1].trim().split(/\s+/).map(Number);
  return { prompt: ids('prompt_ids'), gen: ids('gen_ids') };
}
const G = {
  base: golden('hf/tiny-llama/golden.logits.txt'),
  a: golden('lora/golden.lora-a.s1.0.logits.txt'),
  a05: golden('lora/golden.lora-a.s0.5.logits.txt'),
  ab: golden('lora/golden.lora-a+b.s1.0.logits.txt'),
  b: golden('lora/golden.lora-b.s1.0.logits.txt'),
};

let srv;
const start = () => startServer(`${TD}/hf/tiny-llama`, ['-np', '3', '--kv-f32',
  '--lora', `${TD}/lora/tiny-llama-lora-a`, '--lora-scaled', `${TD}/lora/tiny-llama-lora-b.gguf`, '0',
  '--lora-type', 'f16']); // F16 kept: the goldens' greedy ids hold (docs/api.md, Precision)
const post = (route, body) => postJson(`${srv.url}${route}`, body);
// The text generated ids add after the prompt (detokenized with the prompt, so the leading-space
// rule of the first token is the one a completion sees).
async function textOf(g) {
  const all = await post('/detokenize', { tokens: [...g.prompt, ...g.gen] });
  const pre = await post('/detokenize', { tokens: g.prompt });
  return all.json.content.slice(pre.json.content.length);
}
async function complete(g, lora) {
  const body = { prompt: g.prompt, max_tokens: g.gen.length, temperature: 0 };
  if (lora) body.lora = lora;
  const r = await post('/v1/completions', body);
  if (r.status !== 200) throw new Error(`completion: ${r.status} ${JSON.stringify(r.json)}`);
  return r.json.choices[0].text;
}

const cases = [
  ['start-up scales (a 1, b 0)', G.a, null],
  ['a at 0.5', G.a05, [{ id: 0, scale: 0.5 }]],
  ['a and b', G.ab, [{ id: 1, scale: 1 }]],
  ['b alone', G.b, [{ id: 0, scale: 0 }, { id: 1, scale: 1.0 }]],
  ['none', G.base, [{ id: 0, scale: 0 }]],
];

test('GET /lora-adapters lists the adapters with their start-up scales and storage', async () => {
  const r = await fetch(`${srv.url}/lora-adapters`);
  assert(r.status === 200, `status ${r.status}`);
  const l = await r.json();
  assert(Array.isArray(l) && l.length === 2, JSON.stringify(l));
  assert(l[0].id === 0 && l[0].scale === 1 && /tiny-llama-lora-a$/.test(l[0].path), JSON.stringify(l[0]));
  assert(l[1].id === 1 && l[1].scale === 0 && l[1].rank === 4, JSON.stringify(l[1]));
  assert(l[0].weight_type === 'F16' && l[1].weight_type === 'F16', JSON.stringify(l));
});

test('each request gets the golden output of its scales, one after another', async () => {
  for (const [name, g, lora] of cases) {
    const [got, want] = [await complete(g, lora), await textOf(g)];
    assert(got === want, `${name}: ${JSON.stringify(got)} != ${JSON.stringify(want)}`);
  }
});

test('requests with different scales at once each get their own output', async () => {
  const all = [...cases, ...cases];
  const got = await Promise.all(all.map(([, g, lora]) => complete(g, lora)));
  for (let i = 0; i < all.length; i++) {
    const want = await textOf(all[i][1]);
    assert(got[i] === want, `${all[i][0]}: ${JSON.stringify(got[i])} != ${JSON.stringify(want)}`);
  }
});

test('bad lora fields are 400 naming lora', async () => {
  for (const lora of [[{ id: 2, scale: 1 }], [{ id: 0 }], { id: 0, scale: 1 }, [{ id: -1, scale: 1 }],
    [{ id: 0, scale: 'x' }]]) {
    const r = await post('/v1/completions', { prompt: 'x', max_tokens: 1, lora });
    assert(r.status === 400 && r.json.error.param === 'lora', `${JSON.stringify(lora)}: ${r.status} ${JSON.stringify(r.json)}`);
  }
});

await runTests(import.meta.url, { setup: async () => (srv = await start()) });
