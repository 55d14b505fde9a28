// Constrained output through nllm serve: OpenAI response_format (json_object, json_schema) and
// llama-server's grammar / json_schema fields, with the official openai client; every reply is
// parsed and validated with the ajv JSON Schema validator. Prints a Check-style summary line.
import OpenAI from 'openai';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';

import { assert, runTests, startServer, test } from './harness.mjs';

const MODEL = 'models/stories260K.gguf';

const SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 10 },
    age: { type: 'integer', minimum: 0, maximum: 120 },
    pets: { type: 'array', items: { enum: ['cat', 'dog', 'bird'] }, maxItems: 3 },
    born: { type: 'string', format: 'date' },
    id: { type: 'string', format: 'uuid' },
  },
  required: ['name', 'age'],
  additionalProperties: false,
};

let srv;
const ajv = new Ajv({ strict: false });
addFormats(ajv);
const validate = ajv.compile(SCHEMA);
const chat = (extra) => srv.client.chat.completions.create({
  model: 'stories260K.gguf',
  messages: [{ role: 'user', content: 'Tell me about a person.' }],
  max_tokens: 300,
  ...extra,
});

test('response_format json_schema: 24 replies over seeds and temperatures validate', async () => {
  for (let i = 0; i < 24; i++) {
    const r = await chat({
      temperature: [0, 0.7, 1.0, 1.5][i % 4],
      seed: 100 + i,
      response_format: { type: 'json_schema', json_schema: { name: 'person', schema: SCHEMA, strict: true } },
    });
    const c = r.choices[0];
    assert(c.finish_reason === 'stop', `finish ${c.finish_reason}: ${c.message.content}`);
    const doc = JSON.parse(c.message.content);
    assert(validate(doc), `${c.message.content}: ${ajv.errorsText(validate.errors)}`);
  }
});

test('response_format json_object: any JSON, streamed', async () => {
  for (let i = 0; i < 4; i++) {
    const stream = await chat({ temperature: 1, seed: i, stream: true, max_tokens: 400,
      response_format: { type: 'json_object' } });
    let text = '', finish = null;
    for await (const ch of stream) {
      const c = ch.choices[0];
      if (!c) continue;
      text += c.delta.content || '';
      if (c.finish_reason) finish = c.finish_reason;
    }
    if (finish === 'stop') JSON.parse(text);
    else assert(finish === 'length', `finish ${finish}`);
  }
});

test('llama-server fields: grammar and json_schema on /v1/completions', async () => {
  const post = async (body) => {
    const r = await fetch(`${srv.url}/v1/completions`, { method: 'POST',
      headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    return { status: r.status, json: await r.json() };
  };
  let r = await post({ prompt: 'Colors:', max_tokens: 50, temperature: 0.8, seed: 3,
    grammar: 'root ::= color (", " color){1,2}\ncolor ::= "red" | "green" | "blue"\n' });
  assert(r.status === 200, JSON.stringify(r.json));
  assert(/^(red|green|blue)(, (red|green|blue)){1,2}$/.test(r.json.choices[0].text), r.json.choices[0].text);
  assert(r.json.choices[0].finish_reason === 'stop');
  r = await post({ prompt: 'A person:', max_tokens: 300, temperature: 1, seed: 9, json_schema: SCHEMA });
  assert(r.status === 200, JSON.stringify(r.json));
  assert(validate(JSON.parse(r.json.choices[0].text)), r.json.choices[0].text);
});

test('max_tokens too small: finish_reason length', async () => {
  const r = await chat({ max_tokens: 3, temperature: 0,
    response_format: { type: 'json_schema', json_schema: { name: 'p', schema: SCHEMA } } });
  assert(r.choices[0].finish_reason === 'length', r.choices[0].finish_reason);
});

test('bad grammar and schema: 400 with the library message', async () => {
  const bad = async (body, needle) => {
    const r = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'x' }], ...body }) });
    const j = await r.json();
    assert(r.status === 400 && j.error && j.error.message.includes(needle),
      `${r.status} ${JSON.stringify(j)} lacks ${needle}`);
  };
  await bad({ grammar: 'root ::= (' }, 'line 1');
  await bad({ response_format: { type: 'json_schema', json_schema: { schema: { type: 'widget' } } } },
    'unknown type');
  await bad({ response_format: { type: 'yaml' } }, 'json_schema');
  await bad({ response_format: { type: 'json_object' }, grammar: 'root ::= "a"' }, 'not both');
});

await runTests(import.meta.url, { setup: async () => (srv = await startServer(MODEL, [], { OpenAI })) });
