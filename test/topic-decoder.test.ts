import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DecodeError, createDecoder } from '../src/streams/decoder.js';
import { TopicPattern, fillTemplate } from '../src/streams/topic-pattern.js';

const F = ['precipitation', 'temp_max', 'temp_min', 'wind'];
const reasonOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof DecodeError, `expected a DecodeError, got ${String(err)}`);
    return err.reason;
  }
  return 'no error';
};

describe('TopicPattern', () => {
  it('subscribes named wildcards as + and # and captures their values', () => {
    const p = new TopicPattern('sensors/+site/+device/telemetry');
    assert.equal(p.filter, 'sensors/+/+/telemetry');
    assert.deepEqual(p.names, ['site', 'device']);
    assert.deepEqual(p.match('sensors/north/t1/telemetry'), { site: 'north', device: 't1' });
    assert.equal(p.match('sensors/north/t1/status'), null);
    assert.equal(p.match('sensors/north/telemetry'), null);
    assert.equal(p.match('sensors/north/t1/telemetry/extra'), null);
  });

  it('matches # across levels and keeps $ topics out of wildcards (MQTT 3.1.1 §4.7.2)', () => {
    const p = new TopicPattern('#rest');
    assert.deepEqual(p.match('a/b/c'), { rest: 'a/b/c' });
    assert.equal(p.match('$SYS/broker/uptime'), null);
    assert.deepEqual(new TopicPattern('home/#').match('home'), {});
  });

  it('refuses malformed filters', () => {
    assert.throws(() => new TopicPattern('a/#/b'), /last level/);
    assert.throws(() => new TopicPattern('a/b+/c'), /start of a level/);
    assert.throws(() => new TopicPattern('+x/+x'), /named twice/);
  });

  it('fills templates', () => {
    assert.equal(fillTemplate('{site}/{device}', { site: 'n', device: 't1' }), 'n/t1');
  });
});

describe('decoders', () => {
  const json = createDecoder({ type: 'json', features: { precipitation: 'r.rain', temp_max: 'tmax' }, timestamp: { field: 'ts', format: 'epoch_s' }, partial: false }, F);
  const ok = Buffer.from(JSON.stringify({ ts: 1420070400, r: { rain: 0.5 }, tmax: 10, temp_min: 2, wind: 3.5 }));

  it('JSON: field paths per feature, defaults to the feature name, epoch seconds', () => {
    assert.deepEqual(json(ok, 0), { ts: 1420070400000, values: { precipitation: 0.5, temp_max: 10, temp_min: 2, wind: 3.5 } });
  });

  it('JSON: every kind of bad input gets its reason', () => {
    assert.equal(reasonOf(() => json(Buffer.from('{"ts": 1,'), 0)), 'bad_json');
    assert.equal(reasonOf(() => json(Buffer.from('[1,2]'), 0)), 'wrong_type');
    assert.equal(reasonOf(() => json(Buffer.from('{"ts":1420070400,"r":{"rain":0},"tmax":10,"temp_min":2}'), 0)), 'missing_field');
    assert.equal(reasonOf(() => json(Buffer.from('{"ts":1420070400,"r":{"rain":0},"tmax":"10","temp_min":2,"wind":1}'), 0)), 'wrong_type');
    assert.equal(reasonOf(() => json(Buffer.from('{"ts":1420070400,"r":{"rain":0},"tmax":1e999,"temp_min":2,"wind":1}'), 0)), 'non_finite');
    assert.equal(reasonOf(() => json(Buffer.from('{"ts":"soon","r":{"rain":0},"tmax":1,"temp_min":2,"wind":1}'), 0)), 'bad_timestamp');
    assert.equal(reasonOf(() => json(Buffer.from('{"r":{"rain":0},"tmax":1,"temp_min":2,"wind":1}'), 0)), 'missing_field');
  });

  it('JSON: ISO timestamps, and arrival time when none is configured', () => {
    const iso = createDecoder({ type: 'json', timestamp: { field: 'date', format: 'iso' }, partial: false }, ['temp_max']);
    assert.equal(iso(Buffer.from('{"date":"2015-01-02","temp_max":1}'), 0).ts, Date.UTC(2015, 0, 2));
    const arrival = createDecoder({ type: 'json', partial: false }, ['temp_max']);
    assert.equal(arrival(Buffer.from('{"temp_max":1}'), 1234).ts, 1234);
  });

  it('plain number and CSV', () => {
    const num = createDecoder({ type: 'number', feature: 'temp' }, ['temp']);
    assert.deepEqual(num(Buffer.from(' 21.5\n'), 5), { ts: 5, values: { temp: 21.5 } });
    assert.equal(reasonOf(() => num(Buffer.from('warm'), 0)), 'wrong_type');
    assert.equal(reasonOf(() => num(Buffer.from('NaN'), 0)), 'non_finite');
    const csv = createDecoder({ type: 'csv', columns: ['date', ...F], timestamp: { field: 'date', format: 'iso' }, separator: ',' }, F);
    assert.deepEqual(csv(Buffer.from('2015-01-01,0.0,5.6,-2.1,3.4'), 0).values, { precipitation: 0, temp_max: 5.6, temp_min: -2.1, wind: 3.4 });
    assert.equal(reasonOf(() => csv(Buffer.from('2015-01-01,0.0,5.6'), 0)), 'bad_csv');
    assert.equal(reasonOf(() => csv(Buffer.from('2015-01-01,0.0,x,-2.1,3.4'), 0)), 'wrong_type');
  });
});
