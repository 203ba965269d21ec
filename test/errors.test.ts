import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ConfigError } from '../src/config/load-config.js';
import { ErrorCodes, TidecastError } from '../src/errors.js';
import { EXIT_CODE_OF, ExitCodes, NO_RESTART_EXIT_CODES, exitCodeFor } from '../src/exit-codes.js';
import { packageRoot } from '../src/paths.js';
import { tempDir } from './support/temp-dir.js';

const exec = promisify(execFile);

describe('errors and exit codes', () => {
  it('every catalogued error has a stable code and its own exit code', () => {
    const codes = Object.values(ErrorCodes);
    assert.equal(new Set(codes).size, codes.length, 'codes are unique');
    const exits = new Set<number>(Object.values(ExitCodes));
    for (const [name, code] of Object.entries(ErrorCodes)) {
      assert.equal(code, `TIDECAST_ERR_${name}`, 'a code is its name, prefixed');
      const exit = EXIT_CODE_OF[code];
      assert.ok(exit === 1 || exits.has(exit), `${code} exits with a documented code (${exit})`);
      const e = new TidecastError(code, 'x');
      assert.equal(e.code, code);
      assert.equal(e.name, 'TidecastError');
      assert.equal(exitCodeFor(e), exit);
    }
    assert.equal(Object.keys(EXIT_CODE_OF).length, codes.length, 'no exit code for an unknown error');
    assert.equal(exitCodeFor(new ConfigError('f.yaml', ['x: bad'])), ExitCodes.CONFIG);
    assert.equal(exitCodeFor(Object.assign(new Error('bad option'), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' })), ExitCodes.USAGE);
    assert.equal(exitCodeFor(new Error('a bug')), 1);
  });

  it('tidecast throws only catalogued errors (SQLite errors, with their SQLITE_* codes, pass through as they are)', () => {
    const plain: string[] = [];
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.ts')) readFileSync(p, 'utf8').split('\n').forEach((line, i) => /throw new (Range|Type)?Error\(|reject\(new Error\(/.test(line) && plain.push(`${path.relative(packageRoot, p)}:${i + 1}`));
      }
    };
    walk(path.join(packageRoot, 'src'));
    assert.deepEqual(plain, [], 'a plain Error thrown: use TidecastError with a code from errors.ts');
  });

  it('systemd is told not to restart exactly the errors a restart cannot fix', () => {
    const noRestart = new Set(NO_RESTART_EXIT_CODES);
    assert.ok(noRestart.has(EXIT_CODE_OF[ErrorCodes.CONFIG]) && noRestart.has(EXIT_CODE_OF[ErrorCodes.STORE]) && noRestart.has(EXIT_CODE_OF[ErrorCodes.MODEL_CORRUPT]));
    for (const transient of [ErrorCodes.LOCKED, ErrorCodes.STORE_UNAVAILABLE, ErrorCodes.PROVIDER]) assert.ok(!noRestart.has(EXIT_CODE_OF[transient]), `${transient} is restarted`);
    // The README lists each exit code.
    const readme = readFileSync(path.join(packageRoot, 'README.md'), 'utf8');
    for (const code of Object.values(ExitCodes)) assert.match(readme, new RegExp('`' + code + '`'), `README documents exit code ${code}`);
  });

  it('each command is loaded only when it runs: check-config does not load the demo or its embedded broker', async () => {
    const tmp = tempDir();
    const trace = path.join(tmp.dir, 'imports.txt');
    const main = path.join(packageRoot, 'dist', 'src', 'main.js');
    const hook = path.join(packageRoot, 'dist', 'test', 'support', 'import-trace.js');
    await exec(process.execPath, ['--import', hook, main, 'check-config', '--config', path.join(packageRoot, 'config', 'demo.yaml')], { env: { ...process.env, IMPORT_TRACE_FILE: trace } });
    const loaded = readFileSync(trace, 'utf8').split('\n');
    assert.ok(loaded.some((u) => u.endsWith('/cli/check-config.js')), 'the trace saw the command');
    for (const unwanted of ['/cli/demo.js', '/demo/mqtt-demo.js', '/node_modules/aedes/', '/cli/run.js', '/daemon/daemon.js']) {
      assert.ok(!loaded.some((u) => u.includes(unwanted)), `${unwanted} not loaded`);
    }
    tmp.remove();
  });
});
