// Helpers for the loom serve tests: start a server on a free loopback port, talk to it with curl.
import { spawn, execFile } from 'node:child_process';

// servers this test started: killed when the test ends, however it ends
const servers = new Set();
process.on('exit', () => { for (const p of servers) if (p.exitCode === null) p.kill('SIGKILL'); });

export function fail(msg) {
  console.log('FAIL: ' + msg);
  process.exit(1);
}

export function check(cond, msg) {
  if (!cond) fail(msg);
}

// Start `loom serve ARGS --port 0`; resolves with {port, url, proc, log(), stop()} once it listens.
export function startServer(loom, args, env = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(loom, ['serve', '--host', '127.0.0.1', '--port', '0', ...args], {
      env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    servers.add(proc);
    let log = '';
    const timer = setTimeout(() => reject(new Error('loom serve did not start in 30 s:\n' + log)), 30000);
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /listening on (http:\/\/127\.0\.0\.1:(\d+))/.exec(log);
      if (m && !proc.started) {
        proc.started = true;
        clearTimeout(timer);
        resolve({
          port: +m[2], url: m[1], proc, log: () => log,
          stop: () => new Promise((res) => {
            if (proc.exitCode !== null) return res(proc.exitCode);
            proc.on('exit', (code, sig) => res(code === null ? sig : code));
            proc.kill('SIGTERM');
          }),
        });
      }
    });
    proc.on('exit', (code) => { if (!proc.started) reject(new Error(`loom serve exited ${code}:\n${log}`)); });
  });
}

// curl ARGS; resolves {code, body, headers} (code 0 when curl itself failed).
export function curl(args, opts = {}) {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '-N', '-D', '-', '--max-time', String(opts.timeout || 60), ...args],
      { maxBuffer: 64 << 20, encoding: 'utf8' }, (err, stdout) => {
        const sep = stdout.indexOf('\r\n\r\n');
        const head = sep >= 0 ? stdout.slice(0, sep) : '';
        let body = sep >= 0 ? stdout.slice(sep + 4) : stdout;
        // skip a "100 Continue" head
        const heads = [head];
        while (/^HTTP\/1\.1 100/.test(heads[heads.length - 1]) && body.indexOf('\r\n\r\n') >= 0) {
          const s2 = body.indexOf('\r\n\r\n');
          heads.push(body.slice(0, s2));
          body = body.slice(s2 + 4);
        }
        const last = heads[heads.length - 1];
        const m = /^HTTP\/1\.[01] (\d+)/.exec(last);
        resolve({ code: m ? +m[1] : 0, body, headers: last, err });
      });
  });
}

export function post(base, path, obj, extra = []) {
  const body = typeof obj === 'string' ? obj : JSON.stringify(obj);
  return curl([...extra, '-H', 'Content-Type: application/json', '--data-binary', body, base + path]);
}

export function json(r, what) {
  try {
    return JSON.parse(r.body);
  } catch (e) {
    fail(`${what}: not JSON (HTTP ${r.code}): ${r.body.slice(0, 300)}`);
  }
}

// The events of a server-sent-events body: the parsed JSON of each "data:" line, and whether
// it ended with [DONE].
export function events(body, what) {
  const out = [];
  let done = false;
  for (const block of body.split('\n\n')) {
    if (!block.trim()) continue;
    check(block.startsWith('data: '), `${what}: an event that is not "data: ...": ${block.slice(0, 200)}`);
    const d = block.slice(6);
    if (d === '[DONE]') { done = true; continue; }
    check(!done, `${what}: an event after [DONE]`);
    try { out.push(JSON.parse(d)); } catch (e) { fail(`${what}: event is not JSON: ${d.slice(0, 200)}`); }
  }
  check(done, `${what}: the stream did not end with data: [DONE]`);
  return out;
}

// The text of a stream, per choice index.
export function streamText(evs, chat) {
  const t = [];
  for (const e of evs) for (const c of e.choices || []) {
    t[c.index] = (t[c.index] || '') + (chat ? (c.delta && c.delta.content) || '' : c.text || '');
  }
  return t;
}

export function finishReasons(evs) {
  const f = [];
  for (const e of evs) for (const c of e.choices || []) if (c.finish_reason) f[c.index] = c.finish_reason;
  return f;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function metric(base, name, extra = []) {
  const r = await curl([...extra, base + '/metrics']);
  const m = new RegExp('^' + name.replace(/[{}"]/g, (c) => '\\' + c) + ' (\\S+)$', 'm').exec(r.body);
  return m ? +m[1] : NaN;
}

export async function waitFor(what, f, ms = 20000) {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await f()) return;
    await sleep(20);
  }
  fail('timed out waiting for ' + what);
}
