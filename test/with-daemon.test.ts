import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import mqtt from 'mqtt';
import { waitReady, type Child } from './support/child.js';
import { telemetry, waitFor } from './support/fixtures.js';
import { withDaemon, type DaemonContext } from './support/with-daemon.js';

describe('the daemon fixture', () => {
  it('gives a started daemon on a live broker, and tears down the daemon, its children, the broker and the dir even when the test throws', async () => {
    let seen: DaemonContext | undefined;
    let child: Child | undefined;
    await assert.rejects(
      withDaemon({}, async (ctx) => {
        seen = ctx;
        await ctx.publish(telemetry(1, 2));
        await waitFor(() => ctx.count('SELECT count(*) n FROM predictions') === 12, 10_000, 'two steps predicted');
        assert.equal((await fetch(`${ctx.http}/healthz`)).status, 200);
        child = ctx.spawn(['run', '--config', ctx.writeConfig({ http: { enabled: false } }, 'other')]);
        await waitReady(child);
        throw new Error('the test failed');
      }),
      /the test failed/,
      'the test\'s own error, not one of the teardown',
    );
    assert.ok(seen && child);
    assert.ok(child.proc.exitCode !== null || child.proc.signalCode !== null, 'the child process was ended');
    assert.equal(seen.daemon.readiness().checks.started, false, 'the daemon was stopped');
    assert.equal(seen.db.open, false, 'its database closed');
    await assert.rejects(mqtt.connectAsync(seen.url, { reconnectPeriod: 0, connectTimeout: 1000 }), 'the broker is gone');
    assert.equal(existsSync(seen.dir), false, 'the temp dir is removed');
  });
});
