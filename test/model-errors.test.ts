import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ErrorCodes } from '../src/errors.js';
import { loadModel } from '../src/inference/model.js';
import { modelPath, testModelPath } from './support/models.js';
import { tempDir } from './support/temp-dir.js';

/** Copy a shipped model and its card into a temp dir, with the card edited. */
function withEditedCard(edit: (card: Record<string, unknown>) => void): { file: string; remove(): void } {
  const tmp = tempDir();
  const file = path.join(tmp.dir, 'm.onnx');
  copyFileSync(modelPath('weather-lstm'), file);
  const card = JSON.parse(readFileSync(modelPath('weather-lstm').replace('.onnx', '.card.json'), 'utf8')) as Record<string, unknown>;
  edit(card);
  writeFileSync(path.join(tmp.dir, 'm.card.json'), JSON.stringify(card));
  return { file, remove: tmp.remove };
}

describe('model loading refuses with coded errors', () => {
  it('missing file', async () => {
    await assert.rejects(loadModel('/nonexistent/model.onnx'), { code: ErrorCodes.MODEL_NOT_FOUND });
  });

  it('corrupt file', async () => {
    const tmp = tempDir();
    const file = path.join(tmp.dir, 'corrupt.onnx');
    writeFileSync(file, readFileSync(modelPath('weather-gru')).subarray(0, 300));
    await assert.rejects(loadModel(file, { card: null }), (err: Error & { code?: string }) => {
      assert.equal(err.code, ErrorCodes.MODEL_CORRUPT);
      assert.match(err.message, /corrupt\.onnx/);
      return true;
    });
    tmp.remove();
  });

  it('a card whose calendar inputs the graph does not take', async () => {
    const m = withEditedCard((card) => {
      card.calendar = [...((card.calendar as unknown[] | undefined) ?? []), { name: 'hod_sin', cycle: 'hourOfDay', fn: 'sin' }];
    });
    await assert.rejects(loadModel(m.file), (err: Error & { code?: string }) => {
      assert.equal(err.code, ErrorCodes.FEATURE_COUNT);
      assert.match(err.message, /calendar inputs \(.*hod_sin\) but input "input" takes/);
      return true;
    });
    m.remove();
  });

  it('state shapes that do not pair', async () => {
    await assert.rejects(loadModel(testModelPath('unpaired-state.onnx')), (err: Error & { code?: string }) => {
      assert.equal(err.code, ErrorCodes.STATE_UNPAIRED);
      assert.match(err.message, /h0 \[1, batch, 4\]/);
      assert.match(err.message, /signature\.states/, 'the message names the card key that fixes it');
      return true;
    });
  });

  it('feature count that differs from the card', async () => {
    const m = withEditedCard((c) => {
      c.features = [{ name: 'a' }, { name: 'b' }, { name: 'c' }];
      c.scaler = undefined;
    });
    await assert.rejects(loadModel(m.file), (err: Error & { code?: string }) => {
      assert.equal(err.code, ErrorCodes.FEATURE_COUNT);
      assert.match(err.message, /3 features .* takes 4/);
      return true;
    });
    m.remove();
  });

  it('output width that differs from targets × horizons', async () => {
    const m = withEditedCard((c) => {
      c.horizons = [1, 2];
      delete c.calibration; // its residuals name horizon 3: the card would be refused for that first
    });
    await assert.rejects(loadModel(m.file), { code: ErrorCodes.OUTPUT_COUNT });
    m.remove();
  });

  it('invalid card: every problem at once as path: message', async () => {
    const m = withEditedCard((c) => {
      c.mode = 'sideways';
      c.horizons = [-1];
      delete c.stepSeconds;
    });
    await assert.rejects(loadModel(m.file), (err: Error & { code?: string }) => {
      assert.equal(err.code, ErrorCodes.CARD_INVALID);
      assert.match(err.message, /\/mode: must be equal to one of the allowed values/);
      assert.match(err.message, /\/horizons\/0: must be >= 0/);
      assert.match(err.message, /\/: must have required property 'stepSeconds'/);
      return true;
    });
    m.remove();
  });

  it('card that is not JSON', async () => {
    const tmp = tempDir();
    const file = path.join(tmp.dir, 'm.onnx');
    copyFileSync(modelPath('weather-gru'), file);
    writeFileSync(path.join(tmp.dir, 'm.card.json'), '{ not json');
    await assert.rejects(loadModel(file), { code: ErrorCodes.CARD_INVALID });
    tmp.remove();
  });

  it('a card that names inputs the graph lacks', async () => {
    const m = withEditedCard((c) => {
      c.signature = { input: 'features' };
    });
    await assert.rejects(loadModel(m.file), (err: Error & { code?: string }) => {
      assert.equal(err.code, ErrorCodes.SIGNATURE);
      assert.match(err.message, /signature\.input "features" is not an input/);
      return true;
    });
    m.remove();
  });
});
