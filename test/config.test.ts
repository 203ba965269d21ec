import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, findConfigFile, loadConfig } from '../src/config/load-config.js';
import { modelsDir, packageRoot } from '../src/paths.js';
import { tempDir } from './support/temp-dir.js';

const MINIMAL = `
mqtt:
  url: mqtt://127.0.0.1:1883
models:
  weather-lstm: {}
routes:
  - topic: sensors/+site/+device/telemetry
    stream: "{site}/{device}"
    models: [weather-lstm]
    decoder: { type: json }
`;

function write(text: string): { file: string; dir: string; remove(): void } {
  const tmp = tempDir();
  const file = path.join(tmp.dir, 'tidecast.yaml');
  writeFileSync(file, text);
  return { file, dir: tmp.dir, remove: tmp.remove };
}

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail('expected the config to be refused');
}

describe('configuration', () => {
  it('fills defaults from the schema, resolves shipped models and relative paths, and freezes', () => {
    const c = write(MINIMAL);
    const { config } = loadConfig(c.file);
    assert.equal(config.mqtt.clientId, 'tidecast');
    assert.equal(config.mqtt.protocolVersion, 4);
    assert.equal(config.batching.maxBatch, 256);
    assert.equal(config.routes[0]!.decoder.type, 'json');
    assert.equal(config.models['weather-lstm']!.path, path.join(modelsDir, 'weather-lstm.onnx'));
    assert.equal(config.store.path, path.join(c.dir, 'tidecast.db'));
    assert.equal(config.store.forgetStreamsAfterDays, 30, 'forgetStreamsAfterDays defaults to retentionDays');
    assert.equal(config.routes[0]!.decoder.type === 'json' && config.routes[0]!.decoder.partial, false, 'a default inside the decoder oneOf is filled in');
    assert.ok(!('card' in config.models['weather-lstm']!), 'no card key when none is given: the model loader looks beside the model');
    assert.equal(loadConfig(c.file, { TIDECAST_MODELS__WEATHER_LSTM__CARD: 'cards/w.json' }).config.models['weather-lstm']!.card, path.join(c.dir, 'cards', 'w.json'));
    assert.ok(Object.isFrozen(config.mqtt));
    assert.ok(Object.isFrozen(config.models['weather-lstm']));
    c.remove();
  });

  it('reports every problem at once as path: message', () => {
    const c = write(`
mqtt:
  url: http://broker
  qos: 1
models:
  weather-lstm: { threads: 0 }
routes:
  - topic: a/+x/b
    stream: "{y}"
    models: [weather-gru]
    decoder: { type: yaml }
batching: { maxBatch: 0 }
`);
    const problems = problemsOf(() => loadConfig(c.file));
    const text = problems.join('\n');
    assert.match(text, /^mqtt\.url: must match pattern/m);
    assert.match(text, /^mqtt: unknown key "qos"/m);
    assert.match(text, /^models\.weather-lstm\.threads: must be >= 1/m);
    assert.match(text, /^routes\[0\]\.decoder/m);
    assert.match(text, /^batching\.maxBatch: must be >= 1/m);
    assert.ok(problems.length >= 5, text);
    c.remove();
  });

  it('cross-checks references: models used by routes, stream template names, files', () => {
    const c = write(MINIMAL.replace('"{site}/{device}"', '"{site}/{sensor}"').replace('[weather-lstm]', '[weather-lstm, nope]').replace('weather-lstm: {}', 'weather-lstm: {}\n  mine: { path: missing.onnx }'));
    const text = problemsOf(() => loadConfig(c.file)).join('\n');
    assert.match(text, /routes\[0\]\.models: "nope" is not defined under models/);
    assert.match(text, /routes\[0\]\.stream: \{sensor\} is not a named wildcard/);
    assert.match(text, /models\.mine\.path: file not found: .*missing\.onnx/);
    c.remove();
  });

  it('cross-checks alerts: one of above, below and label; a defined model and route; unique names; clearProbability not above probability', () => {
    const c = write(`${MINIMAL}alerts:
  - { name: a, model: weather-lstm, target: temp_max, above: 30, below: 0, probability: 0.5 }
  - { name: a, model: nope, target: temp_max, above: 30, probability: 0.5, clearProbability: 0.6 }
  - { name: b, model: weather-lstm, target: temp_max, below: 0, probability: 0.5, route: north }
  - { name: c, model: weather-lstm, target: temp_max, probability: 0.5, route: route0 }
`);
    const text = problemsOf(() => loadConfig(c.file)).join('\n');
    assert.match(text, /alerts\[0\]: give exactly one of above, below and label \(it has 2\)/);
    assert.match(text, /alerts\[1\]\.name: "a" is used twice/);
    assert.match(text, /alerts\[1\]\.model: "nope" is not defined under models/);
    assert.match(text, /alerts\[1\]\.clearProbability: 0\.6 is above probability/);
    assert.match(text, /alerts\[2\]\.route: no route is named "north" \(routes: route0\)/);
    assert.match(text, /alerts\[3\]: give exactly one of above, below and label \(it has 0\)/);
    assert.doesNotMatch(text, /alerts\[3\]\.route/, 'an unnamed route is route<i>');
    c.remove();
    const named = write(`${MINIMAL}alerts:\n  - { name: "no spaces", model: weather-lstm, target: temp_max, above: 1, probability: 0.5 }\n`);
    assert.match(problemsOf(() => loadConfig(named.file)).join('\n'), /alerts\[0\]\.name: must match pattern/);
    named.remove();
  });

  it('takes overrides from TIDECAST_<PATH> environment variables', () => {
    const c = write(MINIMAL);
    const loaded = loadConfig(c.file, {
      TIDECAST_MQTT__URL: 'mqtts://elsewhere:8883',
      TIDECAST_MQTT__CLIENT_ID: 'gw-7',
      TIDECAST_BATCHING__MAX_DELAY_MS: '12',
      TIDECAST_ROUTES__0__STREAM: '{device}',
      TIDECAST_PUBLISH__ENABLED: 'false',
    });
    const { config } = loaded;
    assert.equal(config.mqtt.url, 'mqtts://elsewhere:8883');
    assert.equal(config.mqtt.clientId, 'gw-7');
    assert.equal(config.batching.maxDelayMs, 12);
    assert.equal(config.routes[0]!.stream, '{device}');
    assert.equal(config.publish.enabled, false);
    assert.equal(loaded.overrides.length, 5);
    const bad = problemsOf(() => loadConfig(c.file, { TIDECAST_MQTT__URLL: 'x', TIDECAST_BATCHING__MAX_BATCH: '"many"' }));
    assert.match(bad.join('\n'), /TIDECAST_MQTT__URLL: no such setting/);
    c.remove();
  });

  it('reads the password from passwordFile and refuses an unreadable one', () => {
    const c = write(MINIMAL.replace('url: mqtt://127.0.0.1:1883', 'url: mqtt://127.0.0.1:1883\n  passwordFile: pw'));
    writeFileSync(path.join(c.dir, 'pw'), 's3cret-Pa55\n');
    const loaded = loadConfig(c.file);
    assert.equal(loaded.secrets.password, 's3cret-Pa55');
    assert.ok(!JSON.stringify(loaded.config).includes('s3cret'), 'the password is not part of the config values');
    assert.match(problemsOf(() => loadConfig(c.file, { TIDECAST_MQTT__PASSWORD_FILE: '/nonexistent/pw' })).join('\n'), /mqtt\.passwordFile: cannot read \/nonexistent\/pw/);
    c.remove();
  });

  it('reads secret files from $CREDENTIALS_DIRECTORY (systemd LoadCredential=) and says when it is not set', () => {
    const c = write(
      MINIMAL.replace(
        'url: mqtt://127.0.0.1:1883',
        'url: mqtts://127.0.0.1:8883\n  passwordFile: $CREDENTIALS_DIRECTORY/mqtt-password\n  tls: { keyFile: "${CREDENTIALS_DIRECTORY}/mqtt-key", certFile: cert.pem }',
      ),
    );
    const creds = path.join(c.dir, 'creds');
    mkdirSync(creds);
    writeFileSync(path.join(creds, 'mqtt-password'), 'from-credential\n');
    writeFileSync(path.join(creds, 'mqtt-key'), 'KEY');
    writeFileSync(path.join(c.dir, 'cert.pem'), 'CERT');
    const loaded = loadConfig(c.file, { CREDENTIALS_DIRECTORY: creds });
    assert.equal(loaded.secrets.password, 'from-credential');
    assert.equal(loaded.secrets.key?.toString(), 'KEY');
    assert.equal(loaded.secrets.cert?.toString(), 'CERT', 'other paths stay relative to the config file');
    const unset = problemsOf(() => loadConfig(c.file, {})).join('\n');
    assert.match(unset, /mqtt\.passwordFile: names \$CREDENTIALS_DIRECTORY, which is not set/);
    assert.match(unset, /mqtt\.tls\.keyFile: names \$CREDENTIALS_DIRECTORY, which is not set/);
    c.remove();
  });

  it('keeps store.forgetStreamsAfterDays at least retentionDays', () => {
    const c = write(MINIMAL + 'store: { retentionDays: 30, forgetStreamsAfterDays: 7 }\n');
    assert.match(problemsOf(() => loadConfig(c.file)).join('\n'), /store\.forgetStreamsAfterDays: 7 is less than store\.retentionDays \(30\)/);
    assert.equal(loadConfig(c.file, { TIDECAST_STORE__FORGET_STREAMS_AFTER_DAYS: '45' }).config.store.forgetStreamsAfterDays, 45);
    c.remove();
  });

  it('refuses a tls block with a plaintext URL (it would connect without TLS)', () => {
    for (const url of ['mqtt://u:hunter2@broker:1883', 'tcp://broker:1883', 'ws://broker:9001']) {
      const c = write(MINIMAL.replace('url: mqtt://127.0.0.1:1883', `url: ${url}\n  tls: { rejectUnauthorized: true }`));
      const problems = problemsOf(() => loadConfig(c.file)).join('\n');
      assert.match(problems, /mqtt\.tls: set, but mqtt\.url ".*" is not a TLS URL, so the connection would be plaintext/, url);
      assert.ok(!problems.includes('hunter2'), 'the message does not print the password');
      c.remove();
    }
    for (const url of ['mqtts://broker:8883', 'tls://broker:8883', 'wss://broker:443/mqtt']) {
      const c = write(MINIMAL.replace('url: mqtt://127.0.0.1:1883', `url: ${url}\n  tls: { rejectUnauthorized: true }`));
      assert.doesNotThrow(() => loadConfig(c.file), url);
      c.remove();
    }
  });

  it('looks up --config, $TIDECAST_CONFIG, /etc/tidecast, then ./config', () => {
    assert.equal(findConfigFile('x.yaml', { TIDECAST_CONFIG: '/e.yaml' }, '/w'), '/w/x.yaml');
    assert.equal(findConfigFile(undefined, { TIDECAST_CONFIG: '/e.yaml' }, '/w'), '/e.yaml');
    assert.equal(findConfigFile(undefined, {}, packageRoot), path.join(packageRoot, 'config', 'tidecast.yaml'));
  });

  it('the shipped example and demo configs validate', () => {
    const pw = write('');
    writeFileSync(path.join(pw.dir, 'pw'), 'x');
    assert.doesNotThrow(() => loadConfig(path.join(packageRoot, 'config', 'tidecast.yaml'), { TIDECAST_MQTT__PASSWORD_FILE: path.join(pw.dir, 'pw') }));
    assert.doesNotThrow(() => loadConfig(path.join(packageRoot, 'config', 'demo.yaml')));
    pw.remove();
  });
});
