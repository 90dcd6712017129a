// Real segchat processes for the browser tests: one server and any number
// of nodes, each on ephemeral ports, each in its own data directory. They
// are found by the lines they print (`listening on ADDR`, `web UI: URL`).

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..');

// SEGCHAT_BIN, else the debug build, else the release build.
export function binary() {
  const candidates = [
    process.env.SEGCHAT_BIN,
    path.join(repoRoot, 'target', 'debug', 'segchat'),
    path.join(repoRoot, 'target', 'release', 'segchat'),
  ].filter(Boolean);
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`no segchat binary (tried ${candidates.join(', ')}); run \`cargo build --bin segchat\``);
  return found;
}

export function tempDir(prefix) {
  return mkdtempSync(path.join(tmpdir(), `segchat-e2e-${prefix}-`));
}

// Environment without the caller's SEGCHAT_* settings.
function cleanEnv() {
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' };
  for (const k of Object.keys(env)) if (k.startsWith('SEGCHAT_')) delete env[k];
  return env;
}

// Spawns `segchat ARGS…` and resolves once every pattern matched a stdout
// line, with the captured groups; rejects at the deadline or on exit.
function start(name, args, patterns, deadlineMs = 30000) {
  const child = spawn(binary(), args, { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  const found = {};
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not start within ${deadlineMs} ms:\n${log.join('\n')}`));
    }, deadlineMs);
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        log.push(`[${name}] ${line}`);
        for (const [key, re] of Object.entries(patterns)) {
          const m = line.match(re);
          if (m && !(key in found)) found[key] = m[1];
        }
        if (Object.keys(patterns).every((k) => k in found)) {
          clearTimeout(timer);
          resolve({ child, found, log });
        }
      }
    });
    child.stderr.on('data', (d) => {
      for (const line of String(d).split('\n')) if (line) log.push(`[${name} stderr] ${line}`);
      if (log.length > 2000) log.splice(0, log.length - 2000);
    });
    child.on('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? sig}) before it was ready:\n${log.join('\n')}`));
    });
  });
}

export class Proc {
  constructor(name, child, log) {
    this.name = name;
    this.child = child;
    this.log = log;
    this.exited = new Promise((r) => child.on('exit', r));
  }

  // SIGKILL: the process gets no chance to say goodbye.
  async kill() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  // SIGTERM, then SIGKILL if it takes too long.
  async stop(graceMs = 5000) {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(t);
  }
}

export async function startServer() {
  const dir = tempDir('server');
  const { child, found, log } = await start('server', ['--data-dir', dir, 'server', '--listen', '127.0.0.1:0'], {
    addr: /^listening on (\S+)/,
  });
  const p = new Proc('server', child, log);
  p.dir = dir;
  p.addr = found.addr;
  return p;
}

// A node; pass `dir` to restart one in the same data directory,
// `advertise` to announce another IP to peers than the one it listens on,
// and `maxFileMib` for the largest file it takes.
export async function startNode(name, serverAddr, dir = tempDir(name), { advertise, idleAfter, maxFileMib, downloadLimitMib } = {}) {
  const { child, found, log } = await start(name, [
    '--data-dir', dir, 'node', '--server', serverAddr, '--p2p', '127.0.0.1:0', '--api', '127.0.0.1:0',
    ...(advertise ? ['--advertise', advertise] : []),
    ...(idleAfter ? ['--idle-after', String(idleAfter)] : []),
    ...(maxFileMib ? ['--max-file-mib', String(maxFileMib)] : []),
    ...(downloadLimitMib ? ['--download-limit-mib', String(downloadLimitMib)] : []),
  ], { api: /^node API listening on (\S+)/, web: /^web UI: (\S+)/ });
  const p = new Proc(name, child, log);
  p.dir = dir;
  p.apiUrl = found.api;
  p.webUrl = found.web;
  p.token = JSON.parse(readFileSync(path.join(dir, 'api.json'), 'utf8')).token;
  return p;
}

// `segchat up`: a server and a node in one process, the server on `listen`.
export async function startUp(name, listen) {
  const dir = tempDir(name);
  let started;
  try {
    started = await start(name, ['--data-dir', dir, 'up', '--listen', listen, '--api', '127.0.0.1:0'], {
      server: /^server listening on (\S+)/, api: /^node API listening on (\S+)/, web: /^web UI: (\S+)/, invite: /^invite: (.*)$/,
    });
  } catch (e) {
    removeDir(dir);
    throw e;
  }
  const { child, found, log } = started;
  const p = new Proc(name, child, log);
  p.dir = dir;
  p.addr = found.server;
  p.apiUrl = found.api;
  p.webUrl = found.web;
  p.invite = found.invite;
  p.token = JSON.parse(readFileSync(path.join(dir, 'node', 'api.json'), 'utf8')).token;
  return p;
}

// The node's API with its bearer token, for checks behind the UI's back.
export async function nodeApi(node, method, apiPath, body) {
  const resp = await fetch(`${node.apiUrl}/api/v1${apiPath}`, {
    method,
    headers: { Authorization: `Bearer ${node.token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  return { status: resp.status, body: text ? JSON.parse(text) : null };
}

export function removeDir(dir) {
  if (process.env.SEGCHAT_KEEP) return;
  try { rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ }
}

// Polls `check` until it returns a truthy value or the deadline passes.
export async function eventually(what, check, deadlineMs = 20000) {
  const until = Date.now() + deadlineMs;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) { last = e; }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// A server and two nodes signed in as alice and bob; alice owns the public
// channels #general and #random, and bob has joined #general.
export async function aliceAndBob(password) {
  const server = await startServer();
  const [nodeA, nodeB] = await Promise.all([startNode('alice-node', server.addr), startNode('bob-node', server.addr)]);
  for (const n of [nodeA, nodeB]) {
    await eventually('the node reaches the server', async () => (await nodeApi(n, 'GET', '/node')).body.server_connected);
  }
  for (const [n, name] of [[nodeA, 'alice'], [nodeB, 'bob']]) {
    const r = await nodeApi(n, 'POST', '/session/register', { username: name, password });
    if (r.status >= 300) throw new Error(`register ${name}: ${JSON.stringify(r.body)}`);
  }
  for (const name of ['general', 'random']) {
    const r = await nodeApi(nodeA, 'POST', '/channels', { name, visibility: 'public' });
    if (r.status >= 300) throw new Error(`create #${name}: ${JSON.stringify(r.body)}`);
  }
  await eventually('bob sees #general', async () => (await nodeApi(nodeB, 'GET', '/channels')).body.channels.some((c) => c.name === 'general'));
  const joined = await nodeApi(nodeB, 'POST', '/channels/general/join');
  if (joined.status >= 300) throw new Error(`bob joins #general: ${JSON.stringify(joined.body)}`);
  return { server, nodeA, nodeB };
}
