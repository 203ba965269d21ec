import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { silentLogger } from '../src/log.js';
import { Store } from '../src/store/store.js';
import { logged, metric, terminate } from './support/child.js';
import { telemetry, waitFor } from './support/fixtures.js';
import type { ConfigInput } from './support/test-config.js';
import { withDaemonProcess } from './support/with-daemon.js';

const MiB = 1024 * 1024;

/**
 * The schema, then 3 MiB of ballast that the test deletes later to "free the
 * disk"; the database capped just above it.
 */
async function ballastedStore(dir: string): Promise<ConfigInput> {
  const dbFile = path.join(dir, 'tidecast.db');
  const store = new Store({ path: dbFile, retentionDays: 36500, log: silentLogger });
  store.start();
  await store.stop();
  const db = new Database(dbFile);
  db.exec('CREATE TABLE ballast (b BLOB)');
  const ins = db.prepare('INSERT INTO ballast VALUES (?)');
  for (let i = 0; i < 48; i++) ins.run(Buffer.alloc(64 * 1024, i));
  db.pragma('wal_checkpoint(TRUNCATE)');
  const bytes = (db.pragma('page_count', { simple: true }) as number) * (db.pragma('page_size', { simple: true }) as number);
  db.close();
  const capMiB = bytes / MiB + 0.08; // room for a couple of hundred messages (schema 7: about 300 bytes each), not for 600
  return { store: { maxSizeMiB: capMiB }, durability: { checkpointIntervalS: 1 } };
}

/**
 * Disk full, for real: the database is capped (store.maxSizeMiB sets SQLite's
 * max_page_count, so inserts fail with SQLITE_FULL exactly as on a full disk)
 * just above a ballast table. The daemon must stop acknowledging, say so,
 * keep everything, and finish once the ballast is deleted.
 */
describe('disk full', () => {
  it('stops acknowledging, loses nothing, and resumes when space returns', { timeout: 120_000 }, () =>
    withDaemonProcess(ballastedStore, async ({ child, http, url, dbFile, count }) => {
      assert.ok(http, 'the daemon logs its HTTP endpoint');
      const metrics = async (): Promise<string> => (await fetch(`${http}/metrics`)).text();
      const msgs = telemetry(6, 120).sort((a, b) => a.ts - b.ts);
      const pub = await mqtt.connectAsync(url, { clientId: 'full-pub' });
      const publish = (part: typeof msgs): Promise<unknown> => Promise.all(part.map((m) => pub.publishAsync(m.topic, m.payload, { qos: 1 })));
      await publish(msgs.slice(0, 600));

      // Full: the daemon says so, holds the next message, and stops making progress.
      await waitFor(() => logged(child, 'store cannot write: holding messages unacknowledged and retrying') !== undefined, 30_000, 'the store-full error');
      const err = logged(child, 'store cannot write: holding messages unacknowledged and retrying') as { err: { code: string } };
      assert.equal(err.err.code, 'SQLITE_FULL');
      // Messages already in the input log are safe; the ones arriving now must wait at the broker.
      await publish(msgs.slice(600));
      await pub.endAsync();
      let text = '';
      for (let i = 0; i < 100 && metric(text, 'tidecast_holding') !== 1; i++) {
        await sleep(50);
        text = await metrics();
      }
      assert.equal(metric(text, 'tidecast_holding'), 1, 'a message is held unacknowledged');
      assert.equal(metric(text, 'tidecast_store_failing'), 1);
      assert.ok(metric(text, 'tidecast_backpressure_total', 'reason="store"') >= 1);
      const ready = await fetch(`${http}/readyz`);
      assert.equal(ready.status, 503, '/readyz reports the store as not writable');
      const stuck = count('SELECT count(*) n FROM steps');
      await sleep(1000);
      assert.equal(count('SELECT count(*) n FROM steps'), stuck, 'no progress while full');
      assert.ok(stuck < msgs.length, `stopped short of the end (${stuck} of ${msgs.length})`);

      // Space returns: everything goes through, once.
      const free = new Database(dbFile);
      free.pragma('busy_timeout = 5000');
      free.exec('DELETE FROM ballast');
      free.close();
      await waitFor(() => count('SELECT count(*) n FROM predictions') === msgs.length * 6, 60_000, 'every prediction after space returned');
      assert.ok(logged(child, 'store writable again; queued writes committed') || logged(child, 'intake resumed'), 'the recovery is logged');
      text = await metrics();
      assert.equal(metric(text, 'tidecast_holding'), 0);
      assert.equal(metric(text, 'tidecast_store_failing'), 0);
      assert.match(text, /^tidecast_store_dropped_total 0$/m, 'a full disk drops no write: they wait');
      assert.equal(count('SELECT count(*) n FROM steps'), msgs.length, 'every message stored once');
      assert.equal(count('SELECT count(*) n FROM dead_letters'), 0, 'nothing dead-lettered');
      assert.equal(await terminate(child), 0, child.stderr());
    }));
});
