// loom serve with curl: every endpoint, plain and streaming, the limits and bad input (each an
// HTTP error with a JSON body while the server goes on serving), cancellation and a clean stop.
// The generated text is checked against `loom run` on the same model (greedy, same token count).
// usage: node serve_curl.mjs LOOM MODEL
import { execFileSync } from 'node:child_process';
import { startServer, curl, post, json, events, streamText, finishReasons, check, fail, metric, waitFor, sleep } from './serve_lib.mjs';

const [loom, model] = process.argv.slice(2);
const prompt = 'Once upon a time';
const runText = (n) => execFileSync(loom, ['run', '-m', model, '-p', prompt, '-n', String(n), '--temp', '0', '--device', 'cpu'],
  { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).replace(/\n$/, '');
const want20 = runText(20);
check(want20.startsWith(prompt) && want20.length > prompt.length, 'loom run printed ' + want20);
const gen20 = want20.slice(prompt.length);

const key = 'sekret-42';
const auth = ['-H', 'Authorization: Bearer ' + key];
const sv = await startServer(loom, ['-m', model, '--device', 'cpu', '-t', '1', '--parallel', '4', '--queue', '8',
  '--max-tokens', '200', '--seq-ctx', '512', '--max-body', '65536', '--api-key', key, '--name', 'stories']);
const B = sv.url;
try {
  // ---- the GET endpoints ----
  let r = await curl([B + '/health']);
  check(r.code === 200 && json(r, '/health').status === 'ok', '/health without a key: ' + r.code + ' ' + r.body);
  r = await curl([...auth, B + '/v1/models']);
  check(r.code === 200 && json(r, 'models').data[0].id === 'stories', '/v1/models: ' + r.body);
  r = await curl([B + '/v1/models']);
  check(r.code === 401 && json(r, '401').error.type === 'authentication_error', 'no key must be 401: ' + r.code + ' ' + r.body);
  r = await curl(['-H', 'Authorization: Bearer wrong', B + '/v1/models']);
  check(r.code === 401, 'a wrong key must be 401: ' + r.code);

  // ---- completions, plain: the text of loom run, usage, finish_reason ----
  r = await post(B, '/v1/completions', { prompt, max_tokens: 20, temperature: 0 }, auth);
  let j = json(r, 'completion');
  check(r.code === 200 && j.object === 'text_completion', 'completion: ' + r.code + ' ' + r.body);
  check(j.choices[0].text === gen20, `completion text\n got  [${j.choices[0].text}]\n want [${gen20}] (loom run -n 20)`);
  check(j.choices[0].finish_reason === 'length', 'finish_reason ' + j.choices[0].finish_reason);
  check(j.usage.completion_tokens === 20 && j.usage.prompt_tokens > 0 &&
        j.usage.total_tokens === j.usage.prompt_tokens + 20, 'usage ' + JSON.stringify(j.usage));
  check(/content-type: application\/json/i.test(r.headers), 'content type: ' + r.headers);

  // ---- the same, streaming ----
  r = await post(B, '/v1/completions', { prompt, max_tokens: 20, temperature: 0, stream: true,
    stream_options: { include_usage: true } }, auth);
  check(r.code === 200 && /content-type: text\/event-stream/i.test(r.headers), 'stream: ' + r.code + ' ' + r.headers);
  let ev = events(r.body, 'completion stream');
  check(streamText(ev, false)[0] === gen20, `stream text\n got  [${streamText(ev, false)[0]}]\n want [${gen20}]`);
  check(finishReasons(ev)[0] === 'length', 'stream finish_reason ' + finishReasons(ev));
  const u = ev[ev.length - 1].usage;
  check(u && u.completion_tokens === 20, 'include_usage: the last event carries usage: ' + JSON.stringify(ev[ev.length - 1]));

  // ---- stop strings: cut before the first match, finish_reason stop, plain and streaming ----
  const words = gen20.trim().split(/\s+/);
  const stopWord = words.length > 2 ? ' ' + words[2] : words[words.length - 1];
  const cut = gen20.slice(0, gen20.indexOf(stopWord));
  for (const stream of [false, true]) {
    r = await post(B, '/v1/completions', { prompt, max_tokens: 20, temperature: 0, stop: [stopWord, 'zzzz'], stream }, auth);
    const text = stream ? streamText(events(r.body, 'stop stream'), false)[0] : json(r, 'stop').choices[0].text;
    const fin = stream ? finishReasons(events(r.body, 'stop stream'))[0] : json(r, 'stop').choices[0].finish_reason;
    check(text === cut && fin === 'stop', `stop '${stopWord}' (stream ${stream}): got [${text}] ${fin}, want [${cut}] stop`);
  }

  // ---- chat, plain and streaming: the same reply both ways ----
  const msgs = [{ role: 'system', content: 'Tell a story.' }, { role: 'user', content: 'A cat' }];
  r = await post(B, '/v1/chat/completions', { model: 'stories', messages: msgs, max_tokens: 24, temperature: 0 }, auth);
  j = json(r, 'chat');
  check(r.code === 200 && j.object === 'chat.completion' && j.choices[0].message.role === 'assistant', 'chat: ' + r.body);
  const reply = j.choices[0].message.content;
  check(reply.length > 0 && j.usage.completion_tokens > 0, 'chat reply empty: ' + r.body);
  r = await post(B, '/v1/chat/completions', { messages: msgs, max_tokens: 24, temperature: 0, stream: true }, auth);
  ev = events(r.body, 'chat stream');
  check(ev[0].object === 'chat.completion.chunk' && ev[0].choices[0].delta.role === 'assistant', 'first chunk: ' + JSON.stringify(ev[0]));
  check(streamText(ev, true)[0] === reply, `chat stream [${streamText(ev, true)[0]}] != plain [${reply}]`);

  // ---- n choices: each its own seed (seed + index); temperature > 0 ----
  r = await post(B, '/v1/completions', { prompt, max_tokens: 16, temperature: 1.0, seed: 7, n: 3 }, auth);
  j = json(r, 'n=3');
  check(r.code === 200 && j.choices.length === 3 && j.choices.every((c, i) => c.index === i && c.text.length > 0), 'n=3: ' + r.body);
  check(j.usage.completion_tokens === 3 * 16, 'n=3 usage ' + JSON.stringify(j.usage));
  r = await post(B, '/v1/completions', { prompt, max_tokens: 16, temperature: 1.0, seed: 7, n: 3, stream: true }, auth);
  const st3 = streamText(events(r.body, 'n=3 stream'), false);
  check(JSON.stringify(st3) === JSON.stringify(j.choices.map((c) => c.text)), 'n=3 streamed ' + JSON.stringify(st3) +
    ' != plain ' + JSON.stringify(j.choices.map((c) => c.text)));
  check(new Set(st3).size > 1, 'n=3 at temperature 1 gave three equal texts: ' + JSON.stringify(st3));

  // ---- penalties and other sampling fields are accepted and change the text ----
  r = await post(B, '/v1/completions', { prompt, max_tokens: 20, temperature: 0, repeat_penalty: 3, frequency_penalty: 0.5,
    presence_penalty: 0.5, top_p: 0.9, min_p: 0.05, top_k: 40, repeat_last_n: 64 }, auth);
  check(r.code === 200, 'penalties: ' + r.body);
  check(json(r, 'penalties').choices[0].text !== gen20, 'penalties changed nothing in the greedy text');

  // ---- bad input: an HTTP error with a JSON error body each ----
  const bad = [
    ['malformed JSON', '/v1/completions', '{"prompt": "x", ', 400, null],
    ['not an object', '/v1/completions', '[1,2]', 400, null],
    ['wrong type', '/v1/completions', { prompt, max_tokens: 'ten' }, 400, 'max_tokens'],
    ['out of range', '/v1/completions', { prompt, temperature: 7 }, 400, 'temperature'],
    ['unknown field', '/v1/completions', { prompt, frobnicate: 1 }, 400, 'frobnicate'],
    ['no prompt', '/v1/completions', { max_tokens: 3 }, 400, 'prompt'],
    ['bad role', '/v1/chat/completions', { messages: [{ role: 'wizard', content: 'x' }] }, 400, 'messages'],
    ['no messages', '/v1/chat/completions', { messages: [] }, 400, 'messages'],
    ['token out of range', '/v1/completions', { prompt: [1, 99999999] }, 400, 'prompt'],
    ['max_tokens above the limit', '/v1/completions', { prompt, max_tokens: 100000 }, 400, 'max_tokens'],
    ['prompt longer than the context', '/v1/completions', { prompt: 'Once upon a time '.repeat(400) }, 400, 'prompt'],
    ['n above the limit', '/v1/completions', { prompt, n: 99 }, 400, 'n'],
    ['stop not strings', '/v1/completions', { prompt, stop: [1] }, 400, 'stop'],
    ['a field given twice', '/v1/chat/completions', '{"messages": [{"role": "user", "content": "a"}], "messages": [{"role": "user", "content": "b"}]}', 400, 'messages'],
  ];
  for (const [what, path, body, code, param] of bad) {
    r = await post(B, path, body, auth);
    const e = json(r, what).error;
    check(r.code === code && e && typeof e.message === 'string', `${what}: want ${code} with an error, got ${r.code} ${r.body}`);
    if (param) check(e.param === param, `${what}: param ${e.param}, want ${param}`);
  }
  r = await post(B, '/v1/completions', JSON.stringify({ prompt: 'x'.repeat(100000) }), auth);
  check(r.code === 413 && json(r, '413').error, 'a body over --max-body must be 413: ' + r.code + ' ' + r.body.slice(0, 200));
  r = await curl([...auth, '-X', 'DELETE', B + '/v1/completions']);
  check(r.code === 405 && json(r, '405').error, 'DELETE must be 405: ' + r.code);
  r = await curl([...auth, B + '/v2/nothing']);
  check(r.code === 404 && json(r, '404').error, 'an unknown path must be 404: ' + r.code);
  r = await post(B, '/v1/completions', { prompt, max_tokens: 20, temperature: 0 }, auth);
  check(r.code === 200 && json(r, 'after errors').choices[0].text === gen20, 'the server must go on serving after bad input');

  // ---- metrics ----
  r = await curl([...auth, B + '/metrics']);
  check(r.code === 200, '/metrics ' + r.code);
  for (const m of ['loom_http_requests_total{code="200"}', 'loom_generated_tokens_total', 'loom_prompt_tokens_total',
    'loom_queue_depth', 'loom_time_to_first_token_seconds_count', 'loom_tokens_per_second', 'loom_requests_running']) {
    check(new RegExp('^' + m.replace(/[{}"]/g, (c) => '\\' + c) + ' [0-9.e+-]+$', 'm').test(r.body), 'metrics lack ' + m + ':\n' + r.body);
  }
  check(await metric(B, 'loom_http_requests_total{code="400"}', auth) >= bad.length, 'the 400s are counted');
  check(await metric(B, 'loom_generated_tokens_total', auth) >= 100, 'generated tokens are counted');
} finally {
  const code = await sv.stop();
  if (code !== 0) fail('loom serve did not stop cleanly on SIGTERM: ' + code + '\n' + sv.log());
}

// ---- queue full (429), cancellation on disconnect: a slowed engine (LOOM_SERVE_STEP_DELAY_MS) ----
const slow = await startServer(loom, ['-m', model, '--device', 'cpu', '-t', '1', '--parallel', '1', '--queue', '1'],
  { LOOM_SERVE_STEP_DELAY_MS: '20' });
try {
  const S = slow.url;
  const want5 = runText(5).slice(prompt.length);
  // at 20 ms a step the tokens come one by one: a stream is sent as it is generated, not at the end
  const rs = await post(S, '/v1/completions', { prompt, max_tokens: 12, temperature: 0, stream: true });
  const evs = events(rs.body, 'slow stream');
  check(evs.filter((e) => e.choices[0] && e.choices[0].text).length >= 8, 'a slowed stream of 12 tokens came in ' + evs.length + ' events');
  for (const [round, stream] of [[1, true], [2, false]]) {
    // A: 400 tokens at 20 ms a step (8 s), but its client gives up after 1.5 s
    const t0 = Date.now();
    const a = curl(['--max-time', '1.5', '-H', 'Content-Type: application/json', '--data-binary',
      JSON.stringify({ prompt, max_tokens: 400, temperature: 0, stream }), S + '/v1/completions']);
    await waitFor('A to run', async () => (await metric(S, 'loom_requests_running')) === 1);
    // B waits in the queue, C finds it full
    const b = post(S, '/v1/completions', { prompt, max_tokens: 5, temperature: 0 });
    await waitFor('B to queue', async () => (await metric(S, 'loom_queue_depth')) === 1);
    const r = await post(S, '/v1/completions', { prompt, max_tokens: 5 });
    check(r.code === 429 && json(r, '429').error.type === 'rate_limit_error', 'a full queue must be 429: ' + r.code + ' ' + r.body);
    await a;
    // A's client is gone: A is cancelled and B runs long before A's 8 s would have ended
    const rb = await b;
    const took = (Date.now() - t0) / 1000;
    check(rb.code === 200 && json(rb, 'B').choices[0].text === want5, `B after A was dropped: ${rb.code} ${rb.body}`);
    console.log(`round ${round}: B finished ${took.toFixed(2)} s after A started`);
    check(took < 5, `B finished ${took.toFixed(1)} s after A started: A was not cancelled when its client left`);
    check(await metric(S, 'loom_requests_cancelled_total') === round, 'cancelled requests counted: ' +
      await metric(S, 'loom_requests_cancelled_total') + ', want ' + round);
  }
} finally {
  const code = await slow.stop();
  if (code !== 0) fail('the slowed server did not stop cleanly: ' + code);
}
console.log('PASS: loom serve with curl (endpoints, streaming, stop, n, penalties, bad input, 401/404/405/413/429, ' +
  'cancellation on disconnect, metrics, clean stop)');
