import assert from 'node:assert/strict';
import { closeSync, openSync, writeSync } from 'node:fs';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { logged, terminate, waitReady } from './support/child.js';
import { telemetry, waitFor } from './support/fixtures.js';
import { withBroker } from './support/test-bed.js';
import { withDaemonProcess } from './support/with-daemon.js';

/** Rows a database holds: steps, forecast values (the `predictions` view). */
function counts(file: string): { steps: number; predictions: number } {
  const db = new Database(file, { readonly: true });
  try {
    return {
      steps: (db.prepare('SELECT count(*) n FROM steps').get() as { n: number }).n,
      predictions: (db.prepare('SELECT count(*) n FROM predictions').get() as { n: number }).n,
    };
  } finally {
    db.close();
  }
}

/** Overwrite `pages` pages of a table's B-tree, from its root page on, with garbage (the file must be closed, its WAL copied back). */
function damage(file: string, table: string, pages: number): void {
  const db = new Database(file, { readonly: true });
  const { rootpage } = db.prepare('SELECT rootpage FROM sqlite_master WHERE name = ?').get(table) as { rootpage: number };
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  db.close();
  const fd = openSync(file, 'r+');
  try {
    for (let p = 0; p < pages; p++) writeSync(fd, Buffer.alloc(pageSize, 0xa5), 0, pageSize, (rootpage - 1 + p) * pageSize);
  } finally {
    closeSync(fd);
  }
}

describe('storage faults', () => {
  it('a damaged database stops the daemon at start with exit 74 and how to recover it, before it acknowledges anything', () =>
    withDaemonProcess({}, async ({ child: first, configFile: file, dbFile, spawn, publish }) => {
      await publish(telemetry(3, 10));
      await waitFor(() => counts(dbFile).steps === 30, 20_000, 'the first 30 steps stored');
      assert.equal(await terminate(first), 0, first.stderr());

      damage(dbFile, 'forecasts', 2);
      // Messages that arrive while it is down wait in its broker session.
      await publish(telemetry(3, 20).slice(30));
      const second = spawn(['run', '--config', file]);
      assert.equal(await second.exit, 74, second.stderr());
      const err = second.stderr();
      assert.match(err, /TIDECAST_ERR_STORE/);
      // PRAGMA quick_check at start finds it (reporting the problems, or failing on the damaged page itself).
      assert.match(err, /is damaged/);
      assert.match(err, /\.recover/);
      assert.equal(logged(second, 'ready'), undefined, 'never ready');
      assert.equal(logged(second, 'connected to broker'), undefined, 'never connected: nothing acknowledged');
    }));

  it('a write that meets a damaged page stops the daemon with exit 74; nothing is dropped or trimmed, and the next start stores every message', () =>
    withBroker(async ({ dbFile, writeConfig, spawn, publish }) => {
      const file = writeConfig();
      const msgs = telemetry(4, 15);
      // Fault injection: the writer's third commit fails as SQLITE_CORRUPT.
      const faulty = spawn(['run', '--config', file], { TIDECAST_FAULT_WRITER_CORRUPT_AT: '3' });
      await waitReady(faulty);
      // One at a time: each message makes its own commit, so the third comes while messages still flow.
      for (const m of msgs) await publish([m]);
      assert.equal(await faulty.exit, 74, faulty.stderr());
      assert.match(faulty.stderr(), /TIDECAST_ERR_STORE: the database .* is damaged \(SQLITE_CORRUPT/);
      assert.ok(logged(faulty, 'database damaged: stopping'), 'logged at fatal level');
      assert.ok(counts(dbFile).steps < msgs.length, 'the fault stopped it before every message was stored');

      const healthy = spawn(['run', '--config', file]);
      await waitReady(healthy);
      await waitFor(() => counts(dbFile).steps === msgs.length, 30_000, `all ${msgs.length} steps stored after the restart (${counts(dbFile).steps})`);
      const c = counts(dbFile);
      assert.equal(c.predictions, msgs.length * 6, 'each with its 6 predictions, none twice');
      assert.equal(await terminate(healthy), 0, healthy.stderr());
    }));
});
