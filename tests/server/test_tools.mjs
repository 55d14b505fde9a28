// Tool calling through nllm serve with the official openai client, on tiny-qwen3 (a Qwen2.5
// tokenizer and chat template with tools; random weights, so every call below is forced by
// tool_choice and its grammar): tools into the template, tool_calls out (whole and streamed),
// the tool result back in, and the final answer. Arguments are validated with ajv against the
// function's parameters. Prints a Check-style summary line.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import Ajv from 'ajv';

import {
  NLLM, TESTDATA, assert, eq, postJson, runTests, startServer, stopServer as stop, test,
} from './harness.mjs';

const MODEL = `${TESTDATA}/hf/tiny-qwen3`;

const WEATHER = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather forecast of a city',
    parameters: {
      type: 'object',
      properties: {
        city: { type: 'string', minLength: 1, maxLength: 12 },
        days: { type: 'integer', minimum: 1, maximum: 7 },
        unit: { enum: ['celsius', 'fahrenheit'] },
      },
      required: ['city', 'days'],
      additionalProperties: false,
    },
  },
};
const TIME = {
  type: 'function',
  function: { name: 'get_time', description: 'The time now', parameters: { type: 'object', properties: {} } },
};
const TOOLS = [WEATHER, TIME];
const ajv = new Ajv({ strict: false });
const validateWeather = ajv.compile(WEATHER.function.parameters);

let srv;
const start = (model, extra = []) => startServer(model, ['-np', '2', ...extra], { OpenAI });
const post = (s, body, route = '/v1/chat/completions') => postJson(`${s.url}${route}`, body);
const USER = { role: 'user', content: 'What is the weather in Paris for the next 3 days?' };
const checkCall = (call, name) => {
  assert(/^[A-Za-z0-9]{9}$/.test(call.id), `id ${call.id}`);
  eq(call.type, 'function', 'type');
  eq(call.function.name, name, 'function name');
  const args = JSON.parse(call.function.arguments);
  if (name === 'get_weather') assert(validateWeather(args), `${call.function.arguments}: ${ajv.errorsText(validateWeather.errors)}`);
  else eq(args, {}, 'get_time takes no arguments');
  return args;
};

test('round trip: named tool call, tool result, final answer', async () => {
  const messages = [{ role: 'system', content: 'You are a weather assistant.' }, USER];
  const r1 = await srv.client.chat.completions.create({ model: 'tiny-qwen3', messages, tools: TOOLS,
    tool_choice: { type: 'function', function: { name: 'get_weather' } }, temperature: 0, max_tokens: 120 });
  const c1 = r1.choices[0];
  eq(c1.finish_reason, 'tool_calls', 'finish_reason');
  eq(c1.message.content, null, 'no content beside the call');
  eq(c1.message.tool_calls.length, 1, 'one call');
  checkCall(c1.message.tool_calls[0], 'get_weather');
  messages.push(c1.message);
  messages.push({ role: 'tool', tool_call_id: c1.message.tool_calls[0].id,
    content: JSON.stringify({ forecast: ['sunny', 'rain', 'sunny'] }) });
  const r2 = await srv.client.chat.completions.create({ model: 'tiny-qwen3', messages, tools: TOOLS,
    tool_choice: 'none', temperature: 0, max_tokens: 12 });
  const c2 = r2.choices[0];
  assert(c2.finish_reason === 'length' || c2.finish_reason === 'stop', c2.finish_reason);
  assert(typeof c2.message.content === 'string' && c2.message.content.length > 0, 'an answer');
  assert(!c2.message.tool_calls || c2.message.tool_calls.length === 0, 'no calls with tool_choice none');
  // the history (assistant tool_calls, tool result) went through the real template: the prompt
  // has exactly the tokens of `nllm template` with the same conversation
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nllm-tools-'));
  const hist = messages.map((m) => (m.tool_calls ? { role: 'assistant', content: '', tool_calls:
    m.tool_calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.function.name,
      arguments: JSON.parse(c.function.arguments) } })) } : m));
  fs.writeFileSync(path.join(dir, 'm.json'), JSON.stringify(hist));
  const t = spawnSync(NLLM, ['template', '-m', MODEL, '--messages', path.join(dir, 'm.json'),
    '--add-generation-prompt'], { encoding: 'utf8' });
  fs.rmSync(dir, { recursive: true });
  eq(t.status, 0, `nllm template: ${t.stderr}`);
  assert(t.stdout.includes('<tool_response>') && t.stdout.includes('"name": "get_weather"'), t.stdout);
  const tok = await post(srv, { content: t.stdout, add_special: false, parse_special: true }, '/tokenize');
  eq(r2.usage.prompt_tokens, tok.json.tokens.length, 'prompt tokens = the template rendering');
});

test('tools go into the prompt: the rendering of the template with tools', async () => {
  const r = await srv.client.chat.completions.create({ model: 'tiny-qwen3', messages: [USER],
    tools: TOOLS, temperature: 0, max_tokens: 1 });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nllm-tools-'));
  fs.writeFileSync(path.join(dir, 'm.json'), JSON.stringify([USER]));
  fs.writeFileSync(path.join(dir, 't.json'), JSON.stringify(TOOLS));
  const t = spawnSync(NLLM, ['template', '-m', MODEL, '--messages', path.join(dir, 'm.json'),
    '--tools', path.join(dir, 't.json'), '--add-generation-prompt'], { encoding: 'utf8' });
  fs.rmSync(dir, { recursive: true });
  eq(t.status, 0, `nllm template: ${t.stderr}`);
  assert(t.stdout.includes('<tools>') && t.stdout.includes('get_time'), 'the template lists the tools');
  const tok = await post(srv, { content: t.stdout, add_special: false, parse_special: true }, '/tokenize');
  eq(r.usage.prompt_tokens, tok.json.tokens.length, 'prompt tokens');
});

test('tool_choice required: a valid call of one of the tools, over seeds', async () => {
  for (let i = 0; i < 8; i++) {
    const r = await srv.client.chat.completions.create({ model: 'tiny-qwen3', messages: [USER],
      tools: TOOLS, tool_choice: "required", temperature: 1, seed: 40 + i, max_tokens: 200 });
    const c = r.choices[0];
    eq(c.finish_reason, 'tool_calls', `seed ${40 + i}: ${JSON.stringify(c.message)}`);
    const call = c.message.tool_calls[0];
    assert(['get_weather', 'get_time'].includes(call.function.name), call.function.name);
    checkCall(call, call.function.name);
  }
});

test('streamed tool call: deltas in OpenAI shape, the same call as unstreamed', async () => {
  const body = { model: 'tiny-qwen3', messages: [USER], tools: TOOLS, temperature: 0, max_tokens: 120,
    tool_choice: { type: 'function', function: { name: 'get_weather' } } };
  const whole = await srv.client.chat.completions.create(body);
  const stream = await srv.client.chat.completions.create({ ...body, stream: true,
    stream_options: { include_usage: true } });
  let finish = null, usage = null, content = '';
  const calls = [];
  for await (const ch of stream) {
    if (ch.usage) usage = ch.usage;
    const c = ch.choices[0];
    if (!c) continue;
    content += c.delta.content || '';
    for (const d of c.delta.tool_calls || []) {
      if (d.id) {
        eq(d.type, 'function', 'first delta of a call has its type');
        calls[d.index] = { id: d.id, type: d.type, function: { name: d.function.name, arguments: '' } };
      }
      calls[d.index].function.arguments += d.function.arguments || '';
    }
    if (c.finish_reason) finish = c.finish_reason;
  }
  eq(finish, 'tool_calls', 'finish_reason');
  eq(content, '', 'no content');
  eq(calls, whole.choices[0].message.tool_calls, 'accumulated deltas = the whole reply');
  eq(usage.completion_tokens, whole.usage.completion_tokens, 'usage');
  // and the client's own accumulator agrees
  const helper = srv.client.chat.completions.stream({ ...body });
  const fin = await helper.finalChatCompletion();
  eq(fin.choices[0].message.tool_calls.map((c) => [c.id, c.function.name, c.function.arguments]),
    calls.map((c) => [c.id, c.function.name, c.function.arguments]), 'ChatCompletionStream');
});

test('tool_choice auto: plain text streams as content, the same as unstreamed', async () => {
  const body = { model: 'tiny-qwen3', messages: [USER], tools: TOOLS, temperature: 0, max_tokens: 16 };
  const whole = await srv.client.chat.completions.create(body);
  const stream = await srv.client.chat.completions.create({ ...body, stream: true });
  let text = '', finish = null, chunks = 0;
  for await (const ch of stream) {
    const c = ch.choices[0];
    if (!c) continue;
    chunks++;
    text += c.delta.content || '';
    assert(!c.delta.tool_calls, 'no tool calls');
    if (c.finish_reason) finish = c.finish_reason;
  }
  eq(text, whole.choices[0].message.content, 'streamed text');
  eq(finish, whole.choices[0].finish_reason, 'finish');
  assert(chunks > 3, 'content went out token by token');
});

test('tool_choice auto: content before a call streams first; a near-marker stays content', async () => {
  // random weights never write a call by themselves: a grammar (llama-server's field) makes
  // this reply what a model would write, and the server has to find the call in it
  const reply = 'Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n</tool_call>';
  const gbnf = (text) => `root ::= ${JSON.stringify(text)}\n`;
  const body = { model: 'tiny-qwen3', messages: [USER], tools: TOOLS, temperature: 0, max_tokens: 80,
    grammar: gbnf(reply) };
  const whole = await srv.client.chat.completions.create(body);
  const m = whole.choices[0].message;
  eq(whole.choices[0].finish_reason, 'tool_calls', 'finish');
  eq(m.content, 'Let me check.', 'content before the call');
  eq(m.tool_calls.map((c) => [c.function.name, JSON.parse(c.function.arguments)]),
    [['get_weather', { city: 'Paris', days: 2 }]], 'the call');
  const stream = await srv.client.chat.completions.create({ ...body, stream: true });
  let content = '', contentChunksBeforeCall = 0, sawCall = false, finish = null;
  const calls = [];
  for await (const ch of stream) {
    const c = ch.choices[0];
    if (!c) continue;
    if (c.delta.content) {
      assert(!sawCall, 'no content after the call');
      content += c.delta.content;
      contentChunksBeforeCall++;
    }
    for (const d of c.delta.tool_calls || []) {
      sawCall = true;
      if (d.id) calls[d.index] = { id: d.id, name: d.function.name, arguments: '' };
      calls[d.index].arguments += d.function.arguments || '';
    }
    if (c.finish_reason) finish = c.finish_reason;
  }
  eq(finish, 'tool_calls', 'streamed finish');
  eq(content, 'Let me check.', 'streamed content');
  assert(contentChunksBeforeCall > 1, 'the content went out token by token, not held to the end');
  eq(calls, m.tool_calls.map((c) => ({ id: c.id, name: c.function.name, arguments: c.function.arguments })),
    'streamed call');
  // text that only starts like a marker, and a malformed call: content, nothing parsed
  for (const text of ['Use <tool_cal maybe.', '<tool_call>\n{"name": "get_weather", "arguments": {\n</tool_call>']) {
    const b = { ...body, grammar: gbnf(text) };
    const r = await srv.client.chat.completions.create(b);
    eq(r.choices[0].message.content, text, 'whole reply is content');
    assert(!r.choices[0].message.tool_calls, 'no tool_calls');
    eq(r.choices[0].finish_reason, 'stop', 'finish stop');
    let t = '';
    for await (const ch of await srv.client.chat.completions.create({ ...b, stream: true }))
      t += (ch.choices[0] && ch.choices[0].delta.content) || '';
    eq(t, text, 'streamed content');
  }
});

// The other two call formats, through real templates given with --chat-template-file (the
// Qwen tokenizer spells their markers as plain text, which is all the server needs here).
for (const [file, format] of [['meta-llama-Llama-3.1-8B-Instruct.jinja', 'llama3'],
  ['mistralai-Mistral-Nemo-Instruct-2407.jinja', 'mistral']]) {
  test(`${format} format (${file}): named call, result, answer`, async () => {
    const s = await start(MODEL, ['--chat-template-file', `tests/data/templates/${file}`]);
    try {
      const messages = [USER];
      for (const stream of [false, true]) {
        const body = { model: 'tiny-qwen3', messages, tools: TOOLS, temperature: 0.7, seed: 5,
          max_tokens: 120, tool_choice: { type: 'function', function: { name: 'get_weather' } } };
        let msg, finish;
        if (!stream) {
          const r = await s.client.chat.completions.create(body);
          msg = r.choices[0].message, finish = r.choices[0].finish_reason;
        } else {
          const fin = await s.client.chat.completions.stream(body).finalChatCompletion();
          msg = fin.choices[0].message, finish = fin.choices[0].finish_reason;
        }
        eq(finish, 'tool_calls', `finish (stream ${stream}): ${JSON.stringify(msg)}`);
        eq(msg.tool_calls.length, 1, 'one call');
        checkCall(msg.tool_calls[0], 'get_weather');
      }
      const r = await s.client.chat.completions.create({ model: 'tiny-qwen3', messages, tools: TOOLS,
        tool_choice: 'required', temperature: 0, max_tokens: 120 });
      const call = r.choices[0].message.tool_calls[0];
      messages.push(r.choices[0].message, { role: 'tool', tool_call_id: call.id, content: '{"ok": true}' });
      const r2 = await s.client.chat.completions.create({ model: 'tiny-qwen3', messages, tools: TOOLS,
        temperature: 0, max_tokens: 8 });
      assert(['stop', 'length', 'tool_calls'].includes(r2.choices[0].finish_reason), r2.choices[0].finish_reason);
      assert(r2.usage.prompt_tokens > r.usage.prompt_tokens, 'the call and its result are in the prompt');
    } finally {
      await stop(s);
    }
  });
}

test('bad tools and tool_choice: 400 naming the field', async () => {
  const bad = async (s, body, param, needle) => {
    const r = await post(s, { messages: [USER], max_tokens: 4, ...body });
    assert(r.status === 400 && r.json.error && r.json.error.param === param &&
      r.json.error.message.includes(needle), `${r.status} ${JSON.stringify(r.json)}`);
  };
  await bad(srv, { tools: {} }, 'tools', 'array');
  await bad(srv, { tools: [{ type: 'function' }] }, 'tools', 'tools[0]');
  await bad(srv, { tools: [{ type: 'retrieval', function: { name: 'x' } }] }, 'tools', 'tools[0]');
  await bad(srv, { tools: [{ type: 'function', function: { name: 'f', parameters: 3 } }] }, 'tools', 'parameters');
  await bad(srv, { tools: TOOLS, tool_choice: 'always' }, 'tool_choice', 'required');
  await bad(srv, { tools: TOOLS, tool_choice: { type: 'function', function: { name: 'nope' } } },
    'tool_choice', 'nope');
  await bad(srv, { tool_choice: 'required' }, 'tool_choice', 'non-empty');
  await bad(srv, { tools: TOOLS, tool_choice: 'required', response_format: { type: 'json_object' } },
    'tool_choice', 'cannot be combined');
  await bad(srv, { tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'widget' } } }],
    tool_choice: 'required' }, 'tools', 'parameters');
  await bad(srv, { messages: [USER, { role: 'assistant', tool_calls: [{ function: { arguments: '{}' } }] }] },
    'messages', 'name');
  await bad(srv, { messages: [{ role: 'user', content: 'x', tool_calls: [] }] }, 'messages', 'assistant');
  // a model without a Jinja template cannot take tools
  const plain = await start('models/stories260K.gguf');
  try {
    await bad(plain, { tools: TOOLS }, 'tools', 'Jinja');
    const r = await post(plain, { messages: [USER], tools: [], max_tokens: 2 });
    eq(r.status, 200, 'an empty tools list is no tools');
  } finally {
    await stop(plain);
  }
});

await runTests(import.meta.url, { setup: async () => (srv = await start(MODEL)) });
