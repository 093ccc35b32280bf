import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createLogger } from '../shared/logging.js';
import { ProcessLedger, type LedgerRecord } from './process-ledger.js';

const log = createLogger('worker', { level: 'silent' });
const dirs: string[] = [];
const pids: number[] = [];

after(() => {
  for (const pid of pids) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // Gone.
    }
  }
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'baton-ledger-'));
  dirs.push(dir);
  return dir;
}

/** A detached `sleep`, as a process sandbox is spawned: its own group, not waited for by anyone else. */
function spawnGroup(): number {
  const child = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
  child.unref();
  const pid = child.pid;
  assert.ok(pid);
  pids.push(pid);
  return pid;
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** A pid no process has any more: a child that ran and was reaped. */
function deadPid(): number {
  const res = spawnSync('true');
  assert.ok(res.pid);
  return res.pid;
}

function rewrite(dir: string, pid: number, change: Partial<LedgerRecord>): void {
  const path = join(dir, 'processes', `${pid}.json`);
  const record = JSON.parse(readFileSync(path, 'utf8')) as LedgerRecord;
  writeFileSync(path, JSON.stringify({ ...record, ...change }));
}

test('the sweep kills the recorded groups of a worker that is gone, and removes their records', async () => {
  const dir = tempDir();
  const pid = spawnGroup();
  new ProcessLedger(dir, 'worker-old', log).record(pid, 'process', 'sb-f-1');
  rewrite(dir, pid, { workerPid: deadPid() });

  const swept = await new ProcessLedger(dir, 'worker-new', log).sweep();
  assert.deepEqual(swept, [{ pid, runtime: 'process', sandboxId: 'sb-f-1', workerId: 'worker-old', outcome: 'killed' }]);
  assert.equal(alive(pid), false);
  assert.deepEqual(readdirSync(join(dir, 'processes')), []);
});

test('the sweep leaves the records of a live worker alone', async () => {
  const dir = tempDir();
  const pid = spawnGroup();
  new ProcessLedger(dir, 'worker-live', log).record(pid, 'process', 'sb-f-2');
  // Its owner is this process, which runs.
  assert.deepEqual(await new ProcessLedger(dir, 'worker-other', log).sweep(), []);
  assert.equal(alive(pid), true);
  assert.deepEqual(readdirSync(join(dir, 'processes')), [`${pid}.json`]);
});

test('killOwn, at the end of a stop, kills what this worker still records and leaves other workers\' records alone', async () => {
  const dir = tempDir();
  const mine = spawnGroup();
  const theirs = spawnGroup();
  const ledger = new ProcessLedger(dir, 'worker-me', log);
  ledger.record(mine, 'process', 'sb-f-lost');
  // Another worker of this same process (baton up runs several) on the same dataDir.
  new ProcessLedger(dir, 'worker-other', log).record(theirs, 'process', 'sb-f-theirs');
  const swept = await ledger.killOwn();
  assert.deepEqual(swept, [{ pid: mine, runtime: 'process', sandboxId: 'sb-f-lost', workerId: 'worker-me', outcome: 'killed' }]);
  assert.equal(alive(mine), false);
  assert.equal(alive(theirs), true);
  assert.deepEqual(readdirSync(join(dir, 'processes')), [`${theirs}.json`]);
});

test('a recorded pid now held by another process is not signalled', async () => {
  const dir = tempDir();
  const pid = spawnGroup();
  new ProcessLedger(dir, 'worker-old', log).record(pid, 'process', 'sb-f-3');
  rewrite(dir, pid, { workerPid: deadPid(), startTime: '1' });
  const swept = await new ProcessLedger(dir, 'worker-new', log).sweep();
  assert.equal(swept[0]?.outcome, 'gone');
  assert.equal(alive(pid), true, 'the process with the reused pid runs on');
  assert.deepEqual(readdirSync(join(dir, 'processes')), []);
});

test('forget removes the record', async () => {
  const dir = tempDir();
  const pid = spawnGroup();
  const ledger = new ProcessLedger(dir, 'worker-a', log);
  ledger.record(pid, 'node');
  assert.deepEqual(readdirSync(join(dir, 'processes')), [`${pid}.json`]);
  await ledger.forget(pid);
  assert.deepEqual(readdirSync(join(dir, 'processes')), []);
});

test('recordAfterIntent writes the record off the event loop; a forget meanwhile waits for it, so no record outlives its process', async () => {
  const dir = tempDir();
  const pid = spawnGroup();
  const ledger = new ProcessLedger(dir, 'worker-a', log);
  await ledger.recordAfterIntent(pid, 'process', 'sb-1');
  const record = JSON.parse(readFileSync(join(dir, 'processes', `${pid}.json`), 'utf8')) as LedgerRecord;
  assert.equal(record.sandboxId, 'sb-1');
  assert.equal(record.workerPid, process.pid);
  assert.match(record.startTime, /^\d+$/);
  await ledger.forget(pid);
  assert.deepEqual(readdirSync(join(dir, 'processes')), []);

  // A process that exits at once is forgotten while its record is still being written.
  const quick = spawnGroup();
  const writing = ledger.recordAfterIntent(quick, 'process', 'sb-2');
  await ledger.forget(quick);
  await writing;
  assert.deepEqual(readdirSync(join(dir, 'processes')), []);
  // A process already gone leaves no record.
  await ledger.recordAfterIntent(deadPid(), 'process', 'sb-3');
  assert.deepEqual(readdirSync(join(dir, 'processes')), []);
});

test('a worker killed during a spawn leaves an intent; the sweep finds the child by its BATON_SANDBOX_ID', async () => {
  const dir = tempDir();
  const sandboxId = `sb-intent-${process.pid}-${Date.now()}`;
  const child = spawn('sleep', ['30'], { detached: true, stdio: 'ignore', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', BATON_SANDBOX_ID: sandboxId } });
  child.unref();
  const pid = child.pid as number;
  pids.push(pid);
  // The intent of a worker that is gone (no such pid), and no pid record: the spawn was cut short.
  const processes = join(dir, 'processes');
  spawnSync('mkdir', ['-p', processes]);
  writeFileSync(
    join(processes, `intent-${sandboxId}.json`),
    JSON.stringify({ sandboxId, runtime: 'process', workerId: 'worker-dead', workerPid: 2 ** 22 + 7, workerStartTime: '1' }),
  );
  const swept = await new ProcessLedger(dir, 'worker-new', log).sweep();
  assert.deepEqual(swept.map((s) => [s.pid, s.sandboxId, s.outcome]), [[pid, sandboxId, 'killed']]);
  assert.throws(() => process.kill(pid, 0), 'the child is gone');
  assert.deepEqual(readdirSync(processes), [], 'the intent is removed');

  // A live worker's intent (this process) is left alone, as are its children.
  const mine = new ProcessLedger(dir, 'worker-live', log);
  mine.intend('sb-mine', 'process');
  assert.deepEqual(await new ProcessLedger(dir, 'worker-other', log).sweep(), []);
  mine.settle('sb-mine');
  assert.deepEqual(readdirSync(processes), []);
});
