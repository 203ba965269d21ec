import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { metric, rssBytes, terminate } from './support/child.js';
import { expectedForecasts, telemetry, waitFor, worstVsExpected, type StoredValue } from './support/fixtures.js';
import { hostileSamples } from './support/hostile.js';
import { STATIONS_ROUTE, type RouteInput } from './support/test-config.js';
import { withDaemonProcess } from './support/with-daemon.js';

const HOSTILE = Number(process.env.HOSTILE_COUNT ?? 100_000);
const SEED = 0x5eed;
const MiB = 1024 * 1024;

/** Every reason a dead letter may carry (src/streams/decoder.ts DeadLetterReason). */
const REASONS = new Set(['no_route', 'too_large', 'bad_json', 'bad_csv', 'missing_field', 'wrong_type', 'non_finite', 'bad_timestamp', 'bad_stream_id', 'late', 'unknown_feature', 'too_many_samples', 'stream_limit', 'internal']);

/**
 * The live half of the hostile-input test: 100,000 adversarial messages (the
 * fuzz test's generators: invalid UTF-8, deep nesting, huge numbers, NaN
 * strings, wrong types, 1 MiB payloads, control characters in would-be stream
 * ids) go through Mosquitto to the daemon as a child process, with valid
 * telemetry interleaved. The daemon must not crash, must dead-letter every
 * rejection with a reason, keep its memory bounded, and still predict the
 * valid streams exactly.
 */
describe('hostile input, live', () => {
  it(`${HOSTILE} adversarial messages: no crash, every rejection dead-lettered with a reason, memory bounded, valid traffic exact`, { timeout: 300_000 }, async () => {
    const fuzzRoute: RouteInput = {
      name: 'fuzz',
      topic: 'fuzz/+id/data',
      stream: 'fuzz/{id}',
      models: ['weather-lstm'],
      decoder: { type: 'json', timestamp: { field: 'ts', format: 'epoch_ms' } },
      resample: { emit: 'complete', wallClock: false },
    };
    // Every refusal stored (no per-minute caps): this test checks each dead letter; the flood test below checks the caps.
    const limits = { maxStreams: 5000, deadLettersPerMinute: 1000000, deadLettersPerSourcePerMinute: 1000000 };
    // Mosquitto disconnects a client that publishes a topic with wildcards, NUL, C0/C1 control characters or
    // broken UTF-8, so those never reach a daemon behind it (test/daemon.e2e.test.ts feeds them to admit()
    // directly); the rest of each hostile level (long, unicode, empty, '$') goes through as it is.
    const samples = hostileSamples(SEED, HOSTILE).map((s) => ({ topic: `fuzz/${s.level.replace(/[\u0000-\u001f\u007f-\u009f+#/\ud800-\udfff]/g, '_')}/data`, payload: s.payload }));
    const valid = telemetry(5, 60).sort((a, b) => a.ts - b.ts);
    await withDaemonProcess({ routes: [STATIONS_ROUTE, fuzzRoute], limits }, async ({ child, http, dbFile, publish }) => {
      const metrics = async (): Promise<string> => (await fetch(`${http}/metrics`)).text();
      const pid = child.proc.pid!;
      const rssReady = rssBytes(pid);
      let rssPeak = rssReady;
      const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rssBytes(pid))), 200);
      // Valid telemetry trickles in while the flood runs.
      const trickle = (async () => {
        for (let i = 0; i < valid.length; i += 10) {
          await publish(valid.slice(i, i + 10));
          await sleep(20);
        }
      })();
      await publish(samples, 500);
      await trickle;
      const total = samples.length + valid.length;
      let text = '';
      const end = Date.now() + 120_000;
      for (;;) {
        text = await metrics();
        if (metric(text, 'tidecast_messages_total') + metric(text, 'tidecast_dead_letters_total') >= total) break;
        assert.ok(child.proc.exitCode === null, `the daemon died: ${child.stderr()}`);
        assert.ok(Date.now() < end, `only ${metric(text, 'tidecast_messages_total') + metric(text, 'tidecast_dead_letters_total')} of ${total} messages accounted for`);
        await sleep(250);
      }
      clearInterval(sampler);
      const accepted = metric(text, 'tidecast_messages_total');
      const rejected = metric(text, 'tidecast_dead_letters_total');
      assert.equal(accepted + rejected, total, 'every message is either accepted or dead-lettered, exactly once');
      assert.equal(child.proc.exitCode, null, 'no crash');
      assert.match(text, /^tidecast_store_dropped_total 0$/m, 'no store write dropped');

      await waitFor(() => {
        const db = new Database(dbFile, { readonly: true });
        try {
          return (db.prepare('SELECT count(*) n FROM dead_letters').get() as { n: number }).n === rejected;
        } finally {
          db.close();
        }
      }, 30_000, 'every dead letter stored');
      const db = new Database(dbFile, { readonly: true });
      const byReason = db.prepare('SELECT reason, count(*) n, min(length(detail)) shortest FROM dead_letters GROUP BY reason').all() as Array<{ reason: string; n: number; shortest: number }>;
      for (const r of byReason) {
        assert.ok(REASONS.has(r.reason), `known reason: ${r.reason}`);
        assert.ok(r.shortest > 0, `every ${r.reason} dead letter says why`);
        assert.equal(metric(text, 'tidecast_dead_letters_total', `reason="${r.reason}"`), r.n, `metric and table agree for ${r.reason}`);
      }
      const seen = new Set(byReason.map((r) => r.reason));
      for (const r of ['bad_json', 'wrong_type', 'non_finite', 'missing_field', 'bad_timestamp', 'bad_stream_id', 'too_large']) assert.ok(seen.has(r), `the flood produced ${r} (reasons: ${[...seen].join(', ')})`);
      assert.equal(seen.has('internal'), false, 'no rejection fell through to "internal"');
      const big = db.prepare("SELECT max(length(payload)) kept, max(payload_bytes) bytes FROM dead_letters WHERE reason = 'too_large'").get() as { kept: number; bytes: number };
      assert.ok(big.bytes >= MiB && big.kept <= 1024, 'a 1 MiB payload keeps its first KiB and its size');
      const kept = db.prepare('SELECT max(length(payload)) payload, max(length(topic)) topic, max(length(detail)) detail FROM dead_letters').get() as { payload: number; topic: number; detail: number };
      assert.ok(kept.payload <= 1024 && kept.topic <= 1100 && kept.detail <= 1100, `every dead letter keeps at most about a KiB of each: ${JSON.stringify(kept)}`);

      // Valid traffic, interleaved with all that, is predicted exactly.
      await waitFor(() => (db.prepare("SELECT count(*) n FROM predictions WHERE stream NOT LIKE 'fuzz/%'").get() as { n: number }).n === valid.length * 6, 30_000, 'the valid streams\u2019 predictions');
      const want = await expectedForecasts(valid);
      const rows = db.prepare("SELECT stream, issued_at, horizon, target, value FROM predictions WHERE stream NOT LIKE 'fuzz/%' AND horizon = 1 AND target = 'temp_max'").all() as StoredValue[];
      assert.equal(rows.length, valid.length);
      const worst = worstVsExpected(rows, want);
      assert.ok(worst < 1e-4, `valid streams vs the engine run alone: max diff ${worst}`);
      const nonFinite = (db.prepare('SELECT count(*) n FROM predictions WHERE value IS NULL OR abs(value) > 1e308').get() as { n: number }).n;
      assert.equal(nonFinite, 0, 'nothing non-finite stored');
      db.close();

      // Memory: bounded by limits.maxStreams and the payload limit, not by the flood.
      assert.ok(metric(text, 'tidecast_resident_streams') <= 5000);
      const grown = (rssPeak - rssReady) / MiB;
      assert.ok(rssPeak < 600 * MiB && grown < 300, `RSS at ready ${(rssReady / MiB).toFixed(0)} MiB, peak ${(rssPeak / MiB).toFixed(0)} MiB`);
      // Started as the unit starts it (src/node-flags.ts): the flood grew the young generation to its cap, 2 × 8 MiB, not V8's 2 × 16.
      const young = metric(text, 'tidecast_process_nodejs_heap_space_size_total_bytes', 'space="new"');
      assert.ok(young > 0 && young <= 16 * MiB, `young generation ${(young / MiB).toFixed(1)} MiB`);
      assert.equal(await terminate(child), 0, child.stderr());
      console.log(JSON.stringify({ hostile: samples.length, valid: valid.length, accepted, rejected, reasons: Object.fromEntries(byReason.map((r) => [r.reason, r.n])), rssReadyMiB: Math.round(rssReady / MiB), rssPeakMiB: Math.round(rssPeak / MiB) }));
    });
  });

  it('a 100 MB flood of refused messages grows the database by a few MB, logs a few lines, and valid traffic goes on', { timeout: 180_000 }, async () => {
    // Defaults: limits.deadLettersPerMinute 1000, deadLettersPerSourcePerMinute 20, mqtt.maxPayloadBytes 64 KiB.
    const SOURCES = 200;
    const FLOOD = 1700;
    const junk = Buffer.alloc(60_000, 0x7b); // 60 KB of '{': bad_json, under the payload limit
    const flood = Array.from({ length: FLOOD }, (_, i) => ({ topic: `sensors/flood/dev${i % SOURCES}/telemetry`, payload: junk }));
    const valid = telemetry(2, 30).sort((a, b) => a.ts - b.ts);
    await withDaemonProcess({}, async ({ child, http, dir, dbFile, publish }) => {
      const size = (): number => readdirSync(dir).filter((f) => f.startsWith('tidecast.db')).reduce((n, f) => n + statSync(path.join(dir, f)).size, 0);
      const before = size();
      const trickle = (async () => {
        for (let i = 0; i < valid.length; i += 5) {
          await publish(valid.slice(i, i + 5));
          await sleep(20);
        }
      })();
      await publish(flood, 200);
      await trickle;
      let text = '';
      const end = Date.now() + 60_000;
      for (;;) {
        text = await (await fetch(`${http}/metrics`)).text();
        if (metric(text, 'tidecast_messages_total') + metric(text, 'tidecast_dead_letters_total') >= FLOOD + valid.length) break;
        assert.ok(Date.now() < end, `only ${metric(text, 'tidecast_messages_total') + metric(text, 'tidecast_dead_letters_total')} messages accounted for`);
        await sleep(250);
      }
      assert.equal(metric(text, 'tidecast_dead_letters_total', 'reason="bad_json"'), FLOOD, 'every refusal counted');
      const unstored = metric(text, 'tidecast_dead_letters_unstored_total', 'reason="bad_json"');
      await waitFor(() => {
        const db = new Database(dbFile, { readonly: true });
        try {
          return (db.prepare('SELECT count(*) n FROM dead_letters').get() as { n: number }).n === FLOOD - unstored;
        } finally {
          db.close();
        }
      }, 20_000, 'the stored dead letters');
      const db = new Database(dbFile, { readonly: true });
      try {
        assert.equal(FLOOD - unstored, 1000, 'limits.deadLettersPerMinute stored, the rest counted');
        const perSource = db.prepare('SELECT max(n) n FROM (SELECT count(*) n FROM dead_letters GROUP BY stream)').get() as { n: number };
        assert.ok(perSource.n <= 20, `at most deadLettersPerSourcePerMinute of one stream: ${perSource.n}`);
        assert.equal((db.prepare('SELECT max(length(payload)) n FROM dead_letters').get() as { n: number }).n, 1024, 'the first KiB of each');
        // Valid traffic, interleaved with the flood, is all there.
        await waitFor(() => (db.prepare('SELECT count(*) n FROM predictions').get() as { n: number }).n === valid.length * 6, 30_000, 'the valid streams\u2019 predictions');
      } finally {
        db.close();
      }
      const walPeak = (size() - before) / MiB;
      const warned = child.lines.filter((l) => l.includes('"message dead-lettered"')).length;
      assert.ok(warned <= 10, `${warned} refusals logged one by one (the rest are summed up each minute)`);
      assert.match(text, /^tidecast_store_dropped_total 0$/m);
      assert.equal(await terminate(child), 0, child.stderr());
      // Stopped, the WALs are copied back and truncated: what the flood left is what the files hold. While it ran, the WALs
      // (reused, not grown, by later writes) held the stored dead letters' pages and the input log's kind-2 entries too.
      const grown = (size() - before) / MiB;
      console.log(JSON.stringify({ floodMB: Math.round((FLOOD * junk.length) / 1e6), storedDeadLetters: FLOOD - unstored, unstored, databaseGrewMB: Number(grown.toFixed(2)), withWalsAfterFloodMB: Number(walPeak.toFixed(2)), warned }));
      assert.ok(grown < 4, `the database files grew by ${grown.toFixed(1)} MB for ${((FLOOD * junk.length) / 1e6).toFixed(0)} MB refused`);
      assert.ok(walPeak < 16, `with their WALs, ${walPeak.toFixed(1)} MB right after the flood`);
    });
  });
});
