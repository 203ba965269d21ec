import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { defaultCardPath, readCard } from '../src/inference/card.js';
import { packageRoot } from '../src/paths.js';
import { modelPath } from './support/models.js';
import { tempDir } from './support/temp-dir.js';
import { runCli } from './support/child.js';

const tidecast = runCli;

describe('tidecast inspect', () => {
  it('prints inputs, outputs, state pairs, layout, mode and the card as JSON', async () => {
    const { code, stdout } = await tidecast('inspect', modelPath('weather-gru'), '--json');
    assert.equal(code, 0);
    const r = JSON.parse(stdout) as Record<string, unknown> & { statePairs: unknown[]; card: { horizons: number[]; calendar: string[]; calibration: { cells: number } | null } };
    assert.equal(r.mode, 'stateful');
    assert.equal(r.layout, 'batch-first');
    assert.equal(r.batch, 'dynamic');
    assert.deepEqual(r.statePairs, [{ input: 'h0', output: 'hn', floatsPerStream: 64 }]);
    assert.deepEqual(r.card.horizons, [1, 2, 3]);
    assert.deepEqual(r.card.calendar, ['doy_sin = sin(dayOfYear)', 'doy_cos = cos(dayOfYear)']);
    assert.equal(r.featureCount, 6, 'four features and two calendar inputs');
    assert.equal(r.card.calibration?.cells, 6);
  });

  it('shows a windowed model and its held-out metrics in the table', async () => {
    const { code, stdout } = await tidecast('inspect', modelPath('weather-brnn'));
    assert.equal(code, 0);
    assert.match(stdout, /windowed: the last 14 steps per run/);
    assert.match(stdout, /temp_max@1\s+\d+\.\d\d \/ \d+\.\d\d/);
    assert.match(stdout, /intervals\s+seeded from 6 cells of held-out residuals \(2014-01-01\.\.2014-12-31\)/);
    assert.match(stdout, /temp_min@3\s+0\.\d{3} \(\d+\.\d\d\)\s+0\.\d{3} \(\d+\.\d\d\)/, 'held-out coverage and width per level');
  });

  it('refuses a corrupt file with its error code and exit code 65', async () => {
    const tmp = tempDir();
    const file = path.join(tmp.dir, 'broken.onnx');
    writeFileSync(file, 'this is not a protobuf');
    const { code, stderr } = await tidecast('inspect', file, '--no-card');
    tmp.remove();
    assert.equal(code, 65);
    assert.match(stderr, /TIDECAST_ERR_MODEL_CORRUPT/);
  });

  it('exits 64 on a usage error', async () => {
    const { code } = await tidecast('inspect');
    assert.equal(code, 64);
  });
});

describe('tidecast demo', () => {
  it('runs the daemon on an embedded broker and reproduces the held-out accuracy PyTorch measured', async () => {
    const tmp = tempDir();
    const db = path.join(tmp.dir, 'demo.db');
    const { code, stdout, stderr } = await tidecast('demo', '--rate', '100000', '--db', db);
    assert.equal(code, 0, stderr);
    const rows = stdout.split('\n').filter((l) => /^2015-\d\d-\d\d {2}(seattle|new-york) /.test(l));
    assert.equal(rows.length, 730, 'both streams, every day of 2015');
    assert.match(stdout, /broker mqtt:\/\/127\.0\.0\.1:\d+ \(embedded\)/);
    assert.match(stdout, /summary: 2922 messages, 5844 forecasts, 2 streams, 0 dead letters, 365 days shown/);
    const m = /over (\d+) forecasts: model (\d+\.\d+) °C, persistence (\d+\.\d+) °C/.exec(stdout);
    assert.ok(m, 'live MAE line');
    // The held-out MAE PyTorch measured at training time (the card), reproduced
    // through MQTT, the engine and SQLite; the demo also scores the forecast issued on 2014-12-31.
    const card = readCard(defaultCardPath(modelPath('weather-lstm')));
    const test = (card.metrics as { test: { model: Record<string, { mae: number }>; persistence: Record<string, { mae: number }> } }).test;
    assert.ok(Math.abs(Number(m[2]) - test.model['temp_max@1']!.mae) < 0.03, `live ${m[2]} vs card ${test.model['temp_max@1']!.mae}`);
    assert.ok(Math.abs(Number(m[3]) - test.persistence['temp_max@1']!.mae) < 0.03, `persistence ${m[3]}`);
    // The classifier's live calls, scored the same way, against the held-out accuracy in its card
    // (the demo also scores the call issued on 2014-12-31: 730 calls to the card's 728).
    const rain = /live dry\/wet tomorrow over (\d+) calls: (\d+) right, accuracy (\d\.\d+)/.exec(stdout);
    assert.ok(rain, 'live classifier line');
    assert.equal(Number(rain[1]), 730);
    const rainCard = readCard(defaultCardPath(modelPath('weather-rain')));
    const cardAccuracy = (rainCard.metrics as { test: { model: Record<string, { accuracy: number }> } }).test.model['rain@1']!.accuracy;
    assert.ok(Math.abs(Number(rain[3]) - cardAccuracy) < 0.005, `live accuracy ${rain[3]} vs card ${cardAccuracy}`);
    assert.ok(rows.every((l) => /(dry|wet) [✓✗] \/ (dry|wet) \(0\.\d\d\)$/.test(l)), 'each live row shows the call for today and the next one');

    const q = await tidecast('query', '--db', db, '--stream', 'seattle', '--limit', '6', '--json');
    assert.equal(q.code, 0, q.stderr);
    const preds = q.stdout.trim().split('\n').map((l) => JSON.parse(l) as { issuedAt: number; horizon: number; targetTime: number });
    assert.equal(preds.length, 6);
    assert.ok(preds.every((p) => p.issuedAt === Date.UTC(2015, 11, 31) && p.targetTime === p.issuedAt + p.horizon * 86_400_000));

    const a = await tidecast('query', '--db', db, '--accuracy', '--window', '365', '--json');
    assert.equal(a.code, 0, a.stderr);
    const acc = a.stdout.trim().split('\n').map((l) => JSON.parse(l) as { stream: string; horizon: number; target: string; n: number; mae: number; skill: number; coverage: Record<string, number> });
    assert.equal(acc.length, 2 * 3 * 2, 'two streams x three horizons x two targets');
    assert.ok(acc.every((r) => r.n === 365 && r.mae > 0 && Number.isFinite(r.skill)));
    // Empirical coverage of the prediction intervals, per stream: near nominal over a year, the 95% above the 80%.
    for (const r of acc) {
      assert.deepEqual(Object.keys(r.coverage), ['0.8', '0.95'], `${r.stream} ${r.target}@${r.horizon}`);
      assert.ok(r.coverage['0.8']! > 0.7 && r.coverage['0.8']! < 0.9 && r.coverage['0.95']! > 0.9 && r.coverage['0.95']! >= r.coverage['0.8']!, `${r.stream} ${r.target}@${r.horizon}: ${JSON.stringify(r.coverage)}`);
    }
    const table = await tidecast('query', '--db', db, '--accuracy', '--window', '365');
    assert.match(table.stdout, /skill\s+cov80\s+cov95\n/);
    tmp.remove();
  });
});

describe('npx tidecast', () => {
  it('runs after the build (`npm test` builds first): executable, and without npm warnings', async () => {
    const main = path.join(packageRoot, 'dist', 'src', 'main.js');
    assert.ok((statSync(main).mode & 0o111) !== 0, 'dist/src/main.js is executable (the build sets the bit tsc does not)');
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile('npx', ['--no-install', 'tidecast', '--version'], { cwd: packageRoot, timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), (JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version);
    assert.equal(r.stderr, '', 'nothing on stderr: no "Permission denied", no npm warning');
  });
});
