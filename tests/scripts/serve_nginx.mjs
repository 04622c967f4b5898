// Two loom serve replicas behind nginx (the configuration of docs/serving.md, on loopback ports):
// plain and streaming requests through the balancer get the text a replica gives directly, and
// both replicas serve. Skipped (77) when nginx is not installed (it is optional: tools/install-deps.sh
// leaves it out).
// usage: node serve_nginx.mjs LOOM MODEL
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { startServer, post, json, events, streamText, check, fail, metric, sleep } from './serve_lib.mjs';

const [loom, model] = process.argv.slice(2);
let nginxBin = null;
for (const p of ['/usr/sbin/nginx', '/usr/bin/nginx']) {
  try { execFileSync(p, ['-v'], { stdio: 'ignore' }); nginxBin = p; break; } catch (e) { /* next */ }
}
if (!nginxBin) {
  console.log('SKIP: nginx is not installed');
  process.exit(77);
}
const freePort = () => new Promise((res) => { const s = createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); }); });

const a = await startServer(loom, ['-m', model, '--device', 'cpu', '-t', '1']);
const b = await startServer(loom, ['-m', model, '--device', 'cpu', '-t', '1']);
const dir = mkdtempSync(tmpdir() + '/loom-nginx-');
const port = await freePort();
writeFileSync(dir + '/nginx.conf', `
worker_processes 1;
error_log ${dir}/error.log;
pid ${dir}/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi;
    uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
    upstream loom {
        least_conn;
        server 127.0.0.1:${a.port} max_fails=3 fail_timeout=10s;
        server 127.0.0.1:${b.port} max_fails=3 fail_timeout=10s;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:${port};
        client_max_body_size 1m;
        location / {
            proxy_pass http://loom;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 600s;
            proxy_next_upstream error timeout http_429;
        }
    }
}
`);
const ng = spawn(nginxBin, ['-p', dir, '-c', dir + '/nginx.conf', '-g', 'daemon off;'], { stdio: 'ignore' });
let code = 1;
try {
  const N = 'http://127.0.0.1:' + port;
  let up = false;
  for (let i = 0; i < 100 && !up; i++) { await sleep(50); up = (await post(N, '/v1/completions', { prompt: 'x', max_tokens: 1 })).code === 200; }
  check(up, 'nginx did not come up');
  const reqs = Array.from({ length: 8 }, (_, i) => ({ prompt: ['Once upon a time', 'The dog'][i % 2], max_tokens: 24,
    temperature: 0.8, seed: 50 + i, stream: i % 2 === 1 }));
  const text = async (base, r) => {
    const res = await post(base, '/v1/completions', r);
    check(res.code === 200, `${base}: HTTP ${res.code} ${res.body.slice(0, 200)}`);
    return r.stream ? streamText(events(res.body, 'stream'), false)[0] : json(res, 'plain').choices[0].text;
  };
  const direct = [];
  for (const r of reqs) direct.push(await text(a.url, r));
  const via = await Promise.all(reqs.map((r) => text(N, r)));
  for (let i = 0; i < reqs.length; i++) check(via[i] === direct[i], `request ${i} through nginx: [${via[i]}] != [${direct[i]}]`);
  const served = [await metric(b.url, 'loom_http_requests_total{code="200"}'),
    await metric(a.url, 'loom_http_requests_total{code="200"}') - reqs.length];
  check(served[0] > 0 && served[1] > 0, 'both replicas must serve through nginx: ' + JSON.stringify(served));
  console.log(`PASS: two loom serve replicas behind nginx: 8 requests (plain and streaming) as direct, replica A served ${served[1]} and B ${served[0]} of them (with the start-up probe)`);
  code = 0;
} finally {
  ng.kill('SIGQUIT');
  await a.stop();
  await b.stop();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(code);
