// Load test for loom serve (not in CI; docs/serving.md has the figures): C concurrent streaming
// clients for S seconds on loopback. Each request is one of K fixed (prompt, seed) requests whose
// text was first taken from a solo run: any difference (a token lost or mixed up between clients)
// is counted. Prints requests/s, aggregate generated tokens/s, time to first token p50/p99 and
// the server's RSS before and after (from /proc, with --pid).
// usage: node tools/serve-load.mjs URL [--clients 32] [--seconds 60] [--max-tokens 64] [--temperature 0.8] [--pid PID]
const args = process.argv.slice(2);
const url = args[0];
const opt = (name, def) => { const i = args.indexOf('--' + name); return i >= 0 ? args[i + 1] : def; };
const clients = +opt('clients', 32), seconds = +opt('seconds', 60), maxTokens = +opt('max-tokens', 64), pid = opt('pid', null);
const temperature = +opt('temperature', 0.8);
import { readFileSync } from 'node:fs';
import http from 'node:http';

const rss = () => {
  if (!pid) return NaN;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? +m[1] / 1024 : NaN;
};

const prompts = ['Once upon a time', 'The little dog', 'Lily wanted to', 'One day, a big', 'Tom and Sam', 'The sun was'];
const K = 16;
const reqs = Array.from({ length: K }, (_, i) => ({ prompt: prompts[i % prompts.length], max_tokens: maxTokens, temperature,
  seed: 1000 + i, stream: true, stream_options: { include_usage: true } }));

// One streaming request on a connection of its own (node:http, no keep-alive): servers close idle
// keep-alive connections on their own schedules (llama-server's cpp-httplib does), and a POST
// sent on a connection the server is closing fails in the client, which is not the server's
// error; a fresh connection per request costs both servers the same.
function run(body) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const data = JSON.stringify(body);
    const req = http.request(url + '/v1/completions', { method: 'POST', agent: false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) } }, (res) => {
      if (res.statusCode !== 200) { res.resume(); return resolve({ status: res.statusCode }); }
      res.setEncoding('utf8');
      let buf = '', text = '', ttft = null, tokens = 0, done = false;
      res.on('data', (chunk) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (!ev.startsWith('data: ')) continue;
          const d = ev.slice(6);
          if (d === '[DONE]') { done = true; continue; }
          const j = JSON.parse(d);
          if (j.usage) tokens = j.usage.completion_tokens;
          for (const c of j.choices || []) {
            if (c.text && ttft === null) ttft = performance.now() - t0;
            text += c.text || '';
          }
        }
      });
      res.on('end', () => resolve({ status: 200, text, ttft, tokens, done }));
      res.on('error', () => resolve({ status: 0 }));
    });
    req.on('error', () => resolve({ status: 0 }));
    req.end(data);
  });
}

const solo = [];
for (const r of reqs) solo.push((await run(r)).text);
const rss0 = rss();
const t0 = performance.now(), deadline = t0 + seconds * 1000;
let n = 0, tokens = 0, mismatch = 0, errors = 0, incomplete = 0;
const ttfts = [];
await Promise.all(Array.from({ length: clients }, async (_, c) => {
  for (let k = c; performance.now() < deadline; k += clients) {
    const i = k % K;
    const r = await run(reqs[i]);
    if (r.status !== 200) { errors++; continue; }
    n++;
    tokens += r.tokens;
    if (r.ttft !== null) ttfts.push(r.ttft);
    if (!r.done) incomplete++;
    if (r.text !== solo[i]) mismatch++;
  }
}));
const el = (performance.now() - t0) / 1000;
ttfts.sort((a, b) => a - b);
const pct = (p) => ttfts.length ? ttfts[Math.min(ttfts.length - 1, Math.floor(p * ttfts.length))] : NaN;
console.log(JSON.stringify({ clients, seconds: +el.toFixed(1), max_tokens: maxTokens, temperature, requests: n, errors, incomplete, mismatch,
  requests_per_s: +(n / el).toFixed(2), tokens_per_s: +(tokens / el).toFixed(1), ttft_p50_ms: +pct(0.5).toFixed(1),
  ttft_p99_ms: +pct(0.99).toFixed(1), rss_before_mb: +rss0.toFixed(1), rss_after_mb: +rss().toFixed(1) }));
process.exit(mismatch || errors || incomplete ? 1 : 0);
