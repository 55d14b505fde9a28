// POST /v1/embeddings of nllm serve with the official openai client (which asks for base64 and
// decodes it) and raw fetch: strings, lists, token ids, dimensions, usage, errors; vectors
// checked against the float64 references of ../shared/testdata/embed (tiny-qwen3 and the
// tiny-bert encoder). Prints a Check-style summary line.
import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';

import { TESTDATA as DATA, assert, postJson, runTests, startServer, test } from './harness.mjs';

// the references are exact (float64 on the stored BF16 weights): BF16 activations not rounded
const start = (model) => startServer(model, ['--no-bf16-act'], { OpenAI });

// The reference file: ids per sequence and the vector after each header line.
function loadRef(file) {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const ref = { ids: [], vec: {} };
  for (let i = 0; i < lines.length; i++) {
    let m = lines[i].match(/^ids (\d+): (.*)$/);
    if (m) ref.ids[+m[1]] = m[2].trim().split(/\s+/).map(Number);
    m = lines[i].match(/^seq (\d+) pooling (\w+) normalize (\d)( token \d+)?$/);
    if (m) ref.vec[lines[i]] = lines[i + 1].trim().split(/\s+/).map(Number);
  }
  return ref;
}

function relErr(a, b) {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) num += (a[i] - b[i]) ** 2, den += b[i] ** 2;
  return Math.sqrt(num / den);
}

let qwen, bert, qref, bref;

test('strings, id lists and base64 (the client default) match the reference', async () => {
  // "Paris" and sequence 2 as text, sequence 4 as ids; last-token pooling, normalized
  const r = await qwen.client.embeddings.create({
    model: 'tiny-qwen3', input: ['Paris', 'The capital of China is Beijing.'],
  });
  assert(r.object === 'list' && r.data.length === 2, JSON.stringify(r).slice(0, 200));
  assert(r.data[1].index === 1 && r.data[0].object === 'embedding');
  assert(r.data[0].embedding.length === 32, `${r.data[0].embedding.length} floats`);
  let e = relErr(r.data[0].embedding, qref.vec['seq 0 pooling last normalize 1']);
  assert(e < 1e-5, `Paris: rel err ${e}`);
  assert(r.usage.prompt_tokens === 1 + 7 && r.usage.total_tokens === 8, JSON.stringify(r.usage));
  const ids = await qwen.client.embeddings.create({ model: 'tiny-qwen3', input: [qref.ids[2], qref.ids[4]],
    encoding_format: 'float' });
  e = relErr(ids.data[0].embedding, qref.vec['seq 2 pooling last normalize 1']);
  assert(e < 1e-5, `ids of seq 2: rel err ${e}`);
  e = relErr(ids.data[1].embedding, qref.vec['seq 4 pooling last normalize 1']);
  assert(e < 1e-5, `ids of seq 4: rel err ${e}`);
  // one id list (a flat array) is one input
  const one = await qwen.client.embeddings.create({ model: 'tiny-qwen3', input: qref.ids[2] });
  assert(one.data.length === 1 && relErr(one.data[0].embedding, ids.data[0].embedding) < 1e-6);
});

test('dimensions: the first N values, normalized again', async () => {
  const r = await qwen.client.embeddings.create({ model: 'tiny-qwen3', input: 'Paris', dimensions: 8 });
  const v = r.data[0].embedding, full = qref.vec['seq 0 pooling last normalize 1'].slice(0, 8);
  const n = Math.hypot(...full);
  assert(v.length === 8, `${v.length}`);
  assert(relErr(v, full.map((x) => x / n)) < 1e-5, 'renormalized prefix');
  assert(Math.abs(Math.hypot(...v) - 1) < 1e-5, 'unit length');
});

test('bad requests: 400 with OpenAI error shape', async () => {
  const bad = async (body, needle, status = 400) => {
    const r = await postJson(`${qwen.url}/v1/embeddings`, body), j = r.json;
    assert(r.status === status && j.error && j.error.message.includes(needle) && 'param' in j.error,
      `${JSON.stringify(body)}: ${r.status} ${JSON.stringify(j)} lacks ${needle}`);
  };
  await bad({ input: [] }, 'non-empty');
  await bad({ input: '' }, 'empty string');
  await bad({}, 'non-empty');
  await bad({ input: [[1, 2], [3, 1e9]] }, 'not a token id');
  await bad({ input: [[0.5]] }, 'not a token id');
  await bad({ input: [{ a: 1 }] }, 'input 0');
  await bad({ input: 'x', dimensions: 33 }, 'dimensions');
  await bad({ input: 'x', dimensions: 1.5 }, 'dimensions');
  await bad({ input: 'x', encoding_format: 'hex' }, 'encoding_format');
  await bad({ input: 'x', model: 'gpt-9' }, 'does not exist', 404);
  await bad('{"input": [1, 2', 'JSON object');
  await bad({ input: new Array(2049).fill('a') }, 'at most 2048');
  await bad({ input: [new Array(3000).fill(5)] }, 'tokens');
  // and the server still answers
  const r = await qwen.client.embeddings.create({ model: 'tiny-qwen3', input: 'Paris' });
  assert(r.data.length === 1);
});

test('an encoder (tiny-bert): CLS pooling from modules.json, generation refused', async () => {
  if (!bert) return;
  // text through the WordPiece tokenizer ([CLS] ... [SEP]) and ids, mixed in one request
  const input = [bref.ids[0], bref.ids[4], 'The quick brown fox jumps over the lazy dog.'];
  const r = await bert.client.embeddings.create({ input, model: bert.alias });
  for (const [k, s] of [[0, 0], [1, 4], [2, 1]]) {
    const e = relErr(r.data[k].embedding, bref.vec[`seq ${s} pooling cls normalize 1`]);
    assert(e < 1e-5, `text ${s}: rel err ${e}`);
  }
  const n = bref.ids[0].length + bref.ids[4].length + bref.ids[1].length;
  assert(r.usage.prompt_tokens === n, JSON.stringify(r.usage));
  const g = await postJson(`${bert.url}/v1/completions`, { prompt: 'x' }), j = g.json;
  assert(g.status === 400 && j.error.message.includes('encoder'), JSON.stringify(j));
});

await runTests(import.meta.url, {
  setup: async () => {
    const q = path.join(DATA, 'hf/tiny-qwen3'), qr = path.join(DATA, 'embed/tiny-qwen3.embeddings.txt');
    if (!fs.existsSync(q) || !fs.existsSync(qr)) {
      console.log(`SKIP: tests/server/test_embed.mjs: ${q} or ${qr} not found (set NLLM_TESTDATA)`);
      process.exit(0);
    }
    qref = loadRef(qr);
    qwen = await start(q);
    const b = path.join(DATA, 'embed/tiny-bert'), br = path.join(DATA, 'embed/tiny-bert.embeddings.txt');
    if (fs.existsSync(b) && fs.existsSync(br)) {
      bref = loadRef(br);
      bert = await start(b);
      bert.alias = 'tiny-bert';
    } else {
      console.log(`SKIP: tests/server/test_embed.mjs: ${b} not found`);
    }
  },
});
