// loom serve driven by the official `openai` npm package: chat and completions, plain and
// streaming, models, and the errors the client maps to its exception classes. Exits 77 (skipped)
// when the package is not installed and cannot be (tools/install-deps.sh installs it into
// .npm-deps; LOOM_NPM_DIR overrides).
// usage: node serve_openai.mjs LOOM MODEL NPM_DIR
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { startServer, check, fail } from './serve_lib.mjs';

const [loom, model, npmDirArg] = process.argv.slice(2);
const npmDir = resolve(process.env.LOOM_NPM_DIR || npmDirArg);
if (!existsSync(npmDir + '/node_modules/openai/package.json')) {
  try {
    execFileSync('npm', ['install', '--prefix', npmDir, '--no-audit', '--no-fund', '--silent', 'openai@4'],
      { stdio: 'inherit', timeout: 180000 });
  } catch (e) {
    console.log('SKIP: the openai npm package is not installed and npm install failed: ' + e.message);
    process.exit(77);
  }
}
const OpenAI = createRequire(npmDir + '/')('openai');
const version = JSON.parse(readFileSync(npmDir + '/node_modules/openai/package.json', 'utf8')).version;

const prompt = 'Once upon a time';
const want = execFileSync(loom, ['run', '-m', model, '-p', prompt, '-n', '20', '--temp', '0', '--device', 'cpu'],
  { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).replace(/\n$/, '').slice(prompt.length);
const sv = await startServer(loom, ['-m', model, '--device', 'cpu', '-t', '1', '--api-key', 'k1', '--name', 'stories']);
try {
  const client = new OpenAI({ baseURL: sv.url + '/v1', apiKey: 'k1', maxRetries: 0 });
  const models = await client.models.list();
  check(models.data.length === 1 && models.data[0].id === 'stories', 'models.list: ' + JSON.stringify(models.data));

  const c = await client.completions.create({ model: 'stories', prompt, max_tokens: 20, temperature: 0 });
  check(c.choices[0].text === want, `completions.create: [${c.choices[0].text}] want [${want}]`);
  check(c.choices[0].finish_reason === 'length' && c.usage.completion_tokens === 20, 'completion: ' + JSON.stringify(c));
  let text = '';
  for await (const ev of await client.completions.create({ model: 'stories', prompt, max_tokens: 20, temperature: 0, stream: true }))
    text += ev.choices[0]?.text || '';
  check(text === want, `streamed completion [${text}] want [${want}]`);

  const messages = [{ role: 'user', content: 'Tell me about a frog.' }];
  const r = await client.chat.completions.create({ model: 'stories', messages, max_tokens: 30, temperature: 0 });
  const reply = r.choices[0].message.content;
  check(r.choices[0].message.role === 'assistant' && reply.length > 0 && r.usage.total_tokens > 0, 'chat: ' + JSON.stringify(r));
  let streamed = '', finish = null, usage = null;
  const stream = await client.chat.completions.create({ model: 'stories', messages, max_tokens: 30, temperature: 0, stream: true,
    stream_options: { include_usage: true } });
  for await (const ch of stream) {
    if (ch.usage) usage = ch.usage;
    for (const x of ch.choices) {
      streamed += x.delta?.content || '';
      if (x.finish_reason) finish = x.finish_reason;
    }
  }
  check(streamed === reply, `streamed chat [${streamed}] != [${reply}]`);
  check(finish && usage && usage.completion_tokens === r.usage.completion_tokens, `stream finish ${finish}, usage ${JSON.stringify(usage)}`);

  // errors come back as the client's exception classes
  try {
    await client.chat.completions.create({ model: 'stories', messages, temperature: 9 });
    fail('temperature 9 was accepted');
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError && e.status === 400 && /temperature/.test(e.message), 'temperature 9: ' + e);
  }
  try {
    await new OpenAI({ baseURL: sv.url + '/v1', apiKey: 'wrong', maxRetries: 0 }).models.list();
    fail('a wrong key was accepted');
  } catch (e) {
    check(e instanceof OpenAI.AuthenticationError && e.status === 401, 'wrong key: ' + e);
  }
} finally {
  const code = await sv.stop();
  if (code !== 0) fail('loom serve did not stop cleanly: ' + code);
}
console.log(`PASS: the openai npm package ${version} against loom serve (models, completions, chat, streaming, errors)`);
