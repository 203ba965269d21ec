import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ServiceGroup, type Service } from '../src/daemon/service.js';
import { silentLogger } from '../src/log.js';

/** A service that records its start and stop in `events`; `gate` holds its start until released. */
function probe(name: string, events: string[], o: { failStart?: boolean; failStop?: boolean; gate?: Promise<void> } = {}): Service {
  return {
    name,
    async start() {
      events.push(`start ${name}`);
      await o.gate;
      if (o.failStart) throw new Error(`${name} cannot start`);
    },
    stop() {
      events.push(`stop ${name}`);
      if (o.failStop) throw new Error(`${name} cannot stop`);
    },
  };
}

describe('ServiceGroup', () => {
  it('stops what started in reverse order, once, and goes on past a stop that fails', async () => {
    const events: string[] = [];
    const g = new ServiceGroup(silentLogger);
    for (const s of [probe('store', events), probe('models', events, { failStop: true }), probe('mqtt', events)]) await g.start(s);
    assert.deepEqual(g.started, ['store', 'models', 'mqtt']);
    await g.stop();
    await g.stop();
    assert.deepEqual(events, ['start store', 'start models', 'start mqtt', 'stop mqtt', 'stop models', 'stop store']);
  });

  it('stops a service whose start is still running, and starts nothing after a stop', async () => {
    const events: string[] = [];
    const g = new ServiceGroup(silentLogger);
    await g.start(probe('store', events));
    let release!: () => void;
    const starting = g.start(probe('mqtt', events, { gate: new Promise<void>((r) => (release = r)) }));
    await g.stop();
    release();
    await assert.rejects(starting, { code: 'TIDECAST_ERR_STOPPED' });
    await assert.rejects(g.start(probe('http', events)), { code: 'TIDECAST_ERR_STOPPED' });
    assert.deepEqual(events, ['start store', 'start mqtt', 'stop mqtt', 'stop store']);
  });

  it('leaves a service whose start failed out of the stop loop', async () => {
    const events: string[] = [];
    const g = new ServiceGroup(silentLogger);
    await g.start(probe('store', events));
    await assert.rejects(g.start(probe('models', events, { failStart: true })), /models cannot start/);
    await g.stop();
    assert.deepEqual(events, ['start store', 'start models', 'stop store']);
  });
});
