// The Messages API through @anthropic-ai/sdk: create, stream, tools, a system message in the
// conversation, a compaction round trip and the advisor, on the real default model (issue 19).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import Anthropic from '@anthropic-ai/sdk';
import type { BetaMessageParam } from '@anthropic-ai/sdk/resources/beta/messages/messages';
import type { MessageParam, Tool } from '@anthropic-ai/sdk/resources/messages/messages';

import { API_KEY, startMissive, type Running } from './harness.js';

const MODEL = 'claude-opus-4-8';
let server: Running;
let client: Anthropic;

before(async () => {
  server = await startMissive();
  client = new Anthropic({ baseURL: server.url, apiKey: API_KEY, maxRetries: 0 });
});
after(() => server?.stop());

const weather: Tool = {
  name: 'get_weather',
  description: 'Get the current weather in a given city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};

test('create returns a message with usage', async () => {
  const message = await client.messages.create({
    model: MODEL,
    max_tokens: 20,
    messages: [{ role: 'user', content: 'Say hello.' }],
  });
  assert.equal(message.type, 'message');
  assert.equal(message.model, MODEL);
  assert.ok(message.id.startsWith('msg_'));
  assert.ok(message.usage.input_tokens > 0 && message.usage.output_tokens > 0);
  assert.ok(['end_turn', 'max_tokens'].includes(message.stop_reason ?? ''));
});

test('stream text matches the final message', async () => {
  const stream = client.messages.stream({
    model: MODEL,
    max_tokens: 30,
    messages: [{ role: 'user', content: 'Count to five.' }],
  });
  let text = '';
  stream.on('text', (piece) => (text += piece));
  const message = await stream.finalMessage();
  const block = message.content[0];
  assert.equal(block?.type, 'text');
  assert.equal(block.type === 'text' ? block.text : '', text);
});

test('a forced tool call comes back with input of its schema', async () => {
  const message = await client.messages.create({
    model: MODEL,
    max_tokens: 60,
    tools: [weather],
    tool_choice: { type: 'tool', name: 'get_weather', disable_parallel_tool_use: true },
    messages: [{ role: 'user', content: 'Weather in Oslo?' }],
  });
  assert.equal(message.stop_reason, 'tool_use');
  const calls = message.content.filter((b) => b.type === 'tool_use');
  assert.equal(calls.length, 1);
  const call = calls[0];
  assert.ok(call.type === 'tool_use' && call.name === 'get_weather');
  assert.equal(typeof (call.input as { city: unknown }).city, 'string');
});

test('a system message inside the conversation is read', async () => {
  const history: MessageParam[] = [
    { role: 'user', content: 'Hi.' },
    { role: 'assistant', content: 'Hello!' },
    { role: 'system', content: 'From now on, answer in capital letters.' },
    { role: 'user', content: 'Name a colour.' },
  ];
  const plain = history.filter((m) => m.role !== 'system');
  const counted = await client.messages.countTokens({ model: MODEL, messages: history });
  const without = await client.messages.countTokens({ model: MODEL, messages: plain });
  assert.ok(counted.input_tokens >= without.input_tokens + 8, `${counted.input_tokens} vs ${without.input_tokens}`);
  const message = await client.messages.create({ model: MODEL, max_tokens: 10, messages: history });
  assert.equal(message.usage.input_tokens, counted.input_tokens);
});

test('compaction round trip', async () => {
  const history: BetaMessageParam[] = [{ role: 'user', content: 'Review the project. The code word is HERON-42.' }];
  // Long enough that a summary at its cap (512 tokens) still halves the conversation,
  // however the model words it.
  for (let i = 0; i < 4; i++) {
    history.push({
      role: 'assistant',
      content: [{ type: 'tool_use', id: `toolu_${i}`, name: 'read_file', input: { path: `src/m${i}.py` } }],
    });
    const body = Array.from({ length: 80 }, (_, j) => `line${j} = compute(${i}, ${j})`).join(' ');
    history.push({ role: 'user', content: [{ type: 'tool_result', tool_use_id: `toolu_${i}`, content: body }] });
  }
  const tools = [{ name: 'read_file', input_schema: { type: 'object' as const, properties: { path: { type: 'string' } } } }];
  const compacted = await client.beta.messages.create({
    model: MODEL,
    max_tokens: 200,
    tools,
    messages: history,
    compaction: { type: 'summarize', instructions: 'Copy the code word exactly.' },
  });
  assert.equal(compacted.stop_reason, 'compaction');
  const block = compacted.content[0];
  assert.ok(block?.type === 'compaction');
  assert.ok(block.content?.includes('HERON-42'), block.content ?? '');
  assert.equal(compacted.usage.iterations?.[0]?.type, 'compaction');
  const followUp: BetaMessageParam[] = [
    ...history,
    { role: 'assistant', content: [{ type: 'compaction', content: block.content }] },
    { role: 'user', content: 'Go on.' },
  ];
  const before = await client.beta.messages.countTokens({ model: MODEL, tools, messages: history });
  const afterCount = await client.beta.messages.countTokens({ model: MODEL, tools, messages: followUp });
  assert.ok(afterCount.input_tokens < before.input_tokens / 2, `${afterCount.input_tokens} vs ${before.input_tokens}`);
  const reply = await client.beta.messages.create({ model: MODEL, max_tokens: 10, tools, messages: followUp });
  assert.equal(reply.usage.input_tokens, afterCount.input_tokens);
});

test('the advisor streams its blocks and the SDK accumulates them', async () => {
  const stream = client.beta.messages.stream({
    model: MODEL,
    max_tokens: 120,
    betas: ['advisor-tool-2026-03-01'],
    tools: [{ type: 'advisor_20260301', name: 'advisor', model: MODEL, max_tokens: 40, max_uses: 1 }],
    tool_choice: { type: 'tool', name: 'advisor', disable_parallel_tool_use: true },
    messages: [{ role: 'user', content: 'Write a Python function that reverses a string.' }],
  });
  const message = await stream.finalMessage();
  const call = message.content.find((b) => b.type === 'server_tool_use');
  const result = message.content.find((b) => b.type === 'advisor_tool_result');
  assert.ok(call?.type === 'server_tool_use' && call.name === 'advisor');
  assert.ok(result?.type === 'advisor_tool_result' && result.tool_use_id === call.id);
  assert.equal(result.content.type, 'advisor_result');
  assert.ok(result.content.type === 'advisor_result' && result.content.text.trim().length > 0);
  const steps = message.usage.iterations ?? [];
  assert.deepEqual(
    steps.map((s) => s.type),
    ['message', 'advisor_message', 'message'],
  );
  const advice = steps[1];
  assert.ok(advice?.type === 'advisor_message' && advice.output_tokens > 0 && advice.output_tokens <= 40);
  assert.ok(advice.cache_creation !== undefined, 'each step carries its cache writes by TTL');
});
