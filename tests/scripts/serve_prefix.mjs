// Prefix cache (docs/serving.md): requests that share a prompt prefix reuse the cache blocks of
// the earlier ones and evaluate only the rest, and get exactly the text they get from a server
// with --no-prefix-cache.
//  - token-id prompts, so the block arithmetic is exact: a shared 80-token prefix (5 blocks of 16)
//    is reused whole by a longer prompt, as 4 blocks by the 80-token prompt itself (its last
//    token must be evaluated), as 2 blocks when token 40 differs, not at all when token 0 does;
//  - n = 2 (a fork of a sequence that started from cached blocks: copy on write) and chat;
//  - usage.prompt_tokens_details.cached_tokens per request, and /metrics' counters: evaluated +
//    cached = all prompt tokens;
//  - 6 concurrent requests with a shared text prefix;
//  - eviction: a 256-token pool fills with cached blocks of three other prompts, evicts the
//    oldest, the first prompt then finds only what is left, and every text still equals the
//    uncached server's.
// usage: node serve_prefix.mjs LOOM MODEL
import { startServer, post, json, events, streamText, metric, check, fail } from './serve_lib.mjs';

const [loom, model] = process.argv.slice(2);
const common = ['-m', model, '--device', 'cpu', '-t', '1'];
const A = await startServer(loom, [...common, '--parallel', '4']);
const B = await startServer(loom, [...common, '--parallel', '4', '--no-prefix-cache']);
const C = await startServer(loom, [...common, '--parallel', '2', '--ctx', '256', '--seq-ctx', '128']);
const D = await startServer(loom, [...common, '--parallel', '2', '--ctx', '256', '--seq-ctx', '128', '--no-prefix-cache']);

const ids = (n, seed) => Array.from({ length: n }, (_, i) => 3 + ((seed * 7919 + i * 104729) % 480));
const S = ids(80, 1);

async function ask(sv, path, body, what) {
  const r = await post(sv.url, path, body);
  check(r.code === 200, `${what}: HTTP ${r.code} ${r.body.slice(0, 300)}`);
  if (body.stream) {
    const ev = events(r.body, what);
    const u = ev.find((e) => e.usage);
    return { text: JSON.stringify(streamText(ev, path.includes('chat'))), cached: u ? u.usage.prompt_tokens_details.cached_tokens : -1 };
  }
  const o = json(r, what);
  check(o.usage && o.usage.prompt_tokens_details && Number.isInteger(o.usage.prompt_tokens_details.cached_tokens),
    `${what}: no usage.prompt_tokens_details.cached_tokens: ${r.body.slice(0, 300)}`);
  const text = JSON.stringify(o.choices.map((c) => (c.message ? c.message.content : c.text)));
  return { text, cached: o.usage.prompt_tokens_details.cached_tokens, prompt: o.usage.prompt_tokens };
}

// one request on the cached server and on the uncached one: same text, the expected cached count
async function same(sv, ref, path, body, want, what) {
  const a = await ask(sv, path, body, what);
  const b = await ask(ref, path, body, what + ' (no prefix cache)');
  check(a.text === b.text, `${what}: with the prefix cache\n  ${a.text}\nwithout\n  ${b.text}`);
  check(b.cached === 0, `${what}: --no-prefix-cache reported ${b.cached} cached tokens`);
  if (want !== null) check(a.cached === want, `${what}: ${a.cached} cached prompt tokens, expected ${want}`);
  return a;
}

const cmpl = (prompt, extra = {}) => ({ prompt, max_tokens: 24, temperature: 0.8, seed: 7, ...extra });
try {
  let cachedSum = 0, promptSum = 0;
  const t = async (path, body, want, what) => {
    const r = await same(A, B, path, body, want, what);
    cachedSum += r.cached;
    promptSum += r.prompt || 0;
    return r;
  };
  await t('/v1/completions', cmpl([...S, 11, 12, 13]), 0, 'first request');
  await t('/v1/completions', cmpl([...S, 21, 22, 23, 24, 25]), 80, 'shared 80-token prefix');
  await t('/v1/completions', cmpl(S), 64, 'the prefix itself (its last token is evaluated)');
  const S40 = [...S];
  S40[40] = S40[40] === 5 ? 6 : 5;
  await t('/v1/completions', cmpl([...S40, 31]), 32, 'token 40 differs');
  const S0 = [...S];
  S0[0] = S0[0] === 5 ? 6 : 5;
  await t('/v1/completions', cmpl([...S0, 31]), 0, 'token 0 differs');
  // a sequence starting from cached blocks, forked for n = 2 (copy on write of the shared last block)
  await t('/v1/completions', cmpl([...S, 41, 42, 43, 44, 45, 46, 47, 48, 49], { n: 2, temperature: 0.9 }), 80, 'n = 2');
  await t('/v1/completions', cmpl([...S, 21, 22, 23, 24, 25], { seed: 8, max_tokens: 40 }), 80, 'again, another seed');
  const evaluated = await metric(A.url, 'loom_prompt_tokens_total');
  const cachedM = await metric(A.url, 'loom_prompt_tokens_cached_total');
  check(cachedM === cachedSum, `/metrics loom_prompt_tokens_cached_total ${cachedM}, usage said ${cachedSum}`);
  check(evaluated + cachedM === promptSum, `/metrics: ${evaluated} evaluated + ${cachedM} cached != ${promptSum} prompt tokens`);
  check(await metric(A.url, 'loom_prefix_cache_blocks') > 5, 'loom_prefix_cache_blocks should count the cached blocks');

  // text prompts: a long shared "system" part, concurrent requests, plain and streaming, and chat
  const sys = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the sun with her ' +
    'friend Ben. One day, they went to the park and saw a big red ball under a tree. ';
  const tails = ['Lily said', 'Ben was sad', 'The ball', 'They ran', 'A bird', 'Mom called'];
  const chat = (i) => ({ messages: [{ role: 'system', content: sys }, { role: 'user', content: tails[i] }],
    max_tokens: 20, temperature: 0.7, seed: 50 + i });
  await same(A, B, '/v1/chat/completions', chat(0), null, 'chat, first');
  const c1 = await same(A, B, '/v1/chat/completions', chat(1), null, 'chat, second');
  check(c1.cached >= 32, `chat with the same system message: only ${c1.cached} cached tokens`);
  const reqs = tails.map((x, i) => cmpl(sys + x, { seed: 60 + i, stream: i % 2 === 1, stream_options: i % 2 ? { include_usage: true } : undefined }));
  const solo = [];
  for (let i = 0; i < reqs.length; i++) solo.push(await ask(B, '/v1/completions', reqs[i], `text ${i} (no prefix cache)`));
  const together = await Promise.all(reqs.map((q, i) => ask(A, '/v1/completions', q, `text ${i} concurrent`)));
  for (let i = 0; i < reqs.length; i++) {
    check(together[i].text === solo[i].text, `text ${i}: concurrent with the prefix cache\n  ${together[i].text}\nalone without\n  ${solo[i].text}`);
    check(together[i].cached >= 32, `text ${i}: only ${together[i].cached} cached tokens`);
  }

  // eviction: 16 blocks in all; each 96-token prompt + 16 tokens fills 7 blocks
  const P = [ids(96, 11), ids(96, 12), ids(96, 13), ids(96, 14)];
  const e = (p, seed) => cmpl(p, { max_tokens: 16, seed });
  await same(C, D, '/v1/completions', e(P[0], 1), 0, 'eviction: P0');
  await same(C, D, '/v1/completions', e([...P[0], 5], 2), 96, 'eviction: P0 again');
  check(await metric(C.url, 'loom_prefix_cache_evictions_total') === 0, 'no eviction expected yet');
  for (let i = 1; i < 4; i++) await same(C, D, '/v1/completions', e(P[i], i), 0, `eviction: P${i}`);
  const ev = await metric(C.url, 'loom_prefix_cache_evictions_total');
  check(ev > 0, 'three more 7-block prompts in a 16-block pool should evict cached blocks');
  const back = await same(C, D, '/v1/completions', e([...P[0], 5], 3), null, 'eviction: P0 after the others');
  check(back.cached < 96 && back.cached % 16 === 0, `P0 after eviction: ${back.cached} cached tokens (its blocks were evicted)`);
  const last = await same(C, D, '/v1/completions', e([...P[3], 9], 4), 96, 'eviction: the newest prompt is cached whole');
  console.log(`PASS: prefix reuse (${cachedSum} cached of ${promptSum} prompt tokens), same texts as --no-prefix-cache, ` +
    `${ev} evictions, P0 then found ${back.cached} tokens, the newest ${last.cached}`);
} finally {
  for (const sv of [A, B, C, D]) {
    const code = await sv.stop();
    if (code !== 0) fail('loom serve did not stop cleanly: ' + code);
  }
}
