import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { loadModel } from '../src/inference/model.js';
import { modelPath } from './support/models.js';
import { withTempDir } from './support/temp-dir.js';
import { writeConfig } from './support/test-config.js';
import { runCli } from './support/child.js';

const tidecast = runCli;

/** A pino logger whose JSON lines land in an array. */
function capture(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>), done()) });
  return { log: pino({ level: 'info' }, sink), lines };
}

/**
 * Provider fallback on the machine the tests run on. On a box without a GPU
 * (this project's CI) cuda and webgpu fail and the model must land on cpu with
 * a warning naming the provider and the reason; where the GPU provider does
 * work, it must be the one in use with no failure recorded.
 */
/** Whether CUDA really works here: only a session created on it can tell. */
const cudaWorks = (): Promise<boolean> =>
  loadModel(modelPath('weather-lstm'), { providers: ['cuda'], strictProviders: true }).then(
    async (m) => (await m.session.release(), true),
    () => false,
  );

describe('execution providers', () => {
  for (const gpu of ['cuda', 'webgpu']) {
    it(`[${gpu}, cpu]: runs on the first provider that works, and says why the others did not`, async () => {
      const { log, lines } = capture();
      const model = await loadModel(modelPath('weather-lstm'), { providers: [gpu, 'cpu'], log });
      try {
        if (model.provider === gpu) {
          assert.deepEqual(model.providerFailures, [], `${gpu} works here`);
          return;
        }
        assert.equal(model.provider, 'cpu');
        assert.equal(model.providerFailures.length, 1);
        assert.equal(model.providerFailures[0]!.provider, gpu);
        assert.ok(model.providerFailures[0]!.reason.length > 0, 'a reason');
        const warn = lines.find((l) => l.level === 40 && l.provider === gpu && typeof l.reason === 'string');
        assert.ok(warn, `a warning names ${gpu} and its reason: ${JSON.stringify(lines)}`);
        assert.ok(lines.some((l) => l.level === 40 && l.provider === 'cpu'), 'and one says what it runs on instead');
        // It still computes: one step.
        const out = await model.session.run({
          input: new (await import('onnxruntime-node')).default.Tensor('float32', new Float32Array(4), [1, 1, 4]),
          h0: new (await import('onnxruntime-node')).default.Tensor('float32', new Float32Array(64), [2, 1, 32]),
          c0: new (await import('onnxruntime-node')).default.Tensor('float32', new Float32Array(64), [2, 1, 32]),
        });
        assert.equal(out.output!.dims.join(','), '1,1,6');
      } finally {
        await model.session.release();
      }
    });
  }

  it('strictProviders: a failed first choice is fatal with TIDECAST_ERR_PROVIDER', async (t) => {
    if (await cudaWorks()) return t.skip('this machine has CUDA: cuda does not fail here');
    await assert.rejects(loadModel(modelPath('weather-lstm'), { providers: ['cuda', 'cpu'], strictProviders: true }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'TIDECAST_ERR_PROVIDER');
      assert.match(e.message, /execution provider cuda is unavailable .*strictProviders/);
      return true;
    });
  });

  it('tidecast inspect --providers shows the provider in use and the fallback; --strict-providers exits 69', async () => {
    const r = await tidecast('inspect', modelPath('weather-lstm'), '--providers', 'webgpu,cpu', '--json');
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { provider: string; providerFailures: Array<{ provider: string }>; knownProviders: Array<{ name: string; bundled: boolean }> };
    assert.ok(report.knownProviders.some((p) => p.name === 'cpu' && p.bundled));
    if (report.provider === 'cpu') assert.deepEqual(report.providerFailures.map((f) => f.provider), ['webgpu']);
    const table = await tidecast('inspect', modelPath('weather-lstm'), '--providers', 'cuda,cpu');
    assert.match(table.stdout, /^provider {3}(cuda|cpu \(fell back: cuda: .+\))/m);
    if (!(await cudaWorks())) {
      const strict = await tidecast('inspect', modelPath('weather-lstm'), '--providers', 'cuda,cpu', '--strict-providers');
      assert.equal(strict.code, 69, strict.stderr);
      assert.match(strict.stderr, /TIDECAST_ERR_PROVIDER/);
    }
  });

  it('check-config reports the provider each model got; strictProviders in the config exits 69', () =>
    withTempDir(async (dir) => {
      const write = (strict: boolean): string =>
        writeConfig(dir, { models: { 'weather-lstm': { providers: ['cuda', { name: 'cpu' }], strictProviders: strict } }, routes: [{ topic: 's/+id', stream: '{id}', models: ['weather-lstm'], decoder: { type: 'json' } }] }, `p-${strict}`);
      const ok = await tidecast('check-config', '--config', write(false));
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /weather-lstm on (cuda|cpu \(cuda unavailable: .+\))/);
      if (!(await cudaWorks())) {
        const strict = await tidecast('check-config', '--config', write(true));
        assert.equal(strict.code, 69, strict.stderr);
      }
    }));
});
