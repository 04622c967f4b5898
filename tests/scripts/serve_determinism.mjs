// Continuous batching changes nothing in what a request gets: sampled (temperature 0.9, a seed
// each) streaming requests sent all at once, more of them than --parallel (so requests join and
// leave the running batch), each return exactly the text of the same request run alone.
// usage: node serve_determinism.mjs LOOM MODEL
import { startServer, post, events, streamText, check, fail } from './serve_lib.mjs';

const [loom, model] = process.argv.slice(2);
const prompts = ['Once upon a time', 'The little dog', 'Lily and Ben went to the park. They'];
const reqs = [];
for (let i = 0; i < 12; i++) {
  const chat = i % 4 === 3;
  const base = { max_tokens: 24 + 8 * (i % 5), temperature: 0.9, top_p: 0.95, seed: 100 + i, stream: true };
  reqs.push(chat ? { path: '/v1/chat/completions', chat, body: { ...base, messages: [{ role: 'user', content: prompts[i % 3] }] } }
                 : { path: '/v1/completions', chat, body: { ...base, prompt: prompts[i % 3], n: i % 6 === 1 ? 2 : 1 } });
}
const sv = await startServer(loom, ['-m', model, '--device', 'cpu', '-t', '1', '--parallel', '6', '--queue', '32']);
try {
  const run = async (q) => {
    const r = await post(sv.url, q.path, q.body);
    check(r.code === 200, `${JSON.stringify(q.body)}: HTTP ${r.code} ${r.body.slice(0, 200)}`);
    return streamText(events(r.body, 'stream'), q.chat);
  };
  const solo = [];
  for (const q of reqs) solo.push(await run(q));
  check(new Set(solo.map((t) => t[0])).size >= reqs.length - 2, 'the seeds should give different texts: ' + JSON.stringify(solo));
  for (let round = 0; round < 2; round++) {
    const together = await Promise.all(reqs.map(run));
    for (let i = 0; i < reqs.length; i++)
      check(JSON.stringify(together[i]) === JSON.stringify(solo[i]),
        `round ${round}, request ${i}: concurrent\n  ${JSON.stringify(together[i])}\nalone\n  ${JSON.stringify(solo[i])}`);
  }
} finally {
  const code = await sv.stop();
  if (code !== 0) fail('loom serve did not stop cleanly: ' + code);
}
console.log(`PASS: ${reqs.length} concurrent streaming requests (6 sequences at once) each equal a solo run, twice`);
