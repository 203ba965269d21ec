import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { DashboardApi } from '../src/http/dashboard-api.js';
import { silentLogger } from '../src/log.js';
import { Store, type ForecastLayout } from '../src/store/store.js';
import { tempDir } from './support/temp-dir.js';

const DAY = 86_400_000;
const LAYOUT: ForecastLayout = { stepMs: DAY, cells: [[1, 'x', 0]] };

describe('dashboard API', () => {
  it('lists streams most recently active first, filtered by ?search= (LIKE wildcards taken literally), and refuses bad encoding with 400', async () => {
    const tmp = tempDir();
    const file = path.join(tmp.dir, 'api.db');
    const s = new Store({ path: file, retentionDays: 36500, log: silentLogger });
    s.start();
    const names = ['garden/ws1', 'garden/ws2', 'shed/ws1', 'odd_%name', 'never-checkpointed'];
    await s.commit('m', LAYOUT, names.map((stream, i) => ({ stream, route: 'r', ts: i * DAY, receivedAt: i * DAY, features: ['x'], values: { x: i }, filled: [] })), []);
    await s.settled();
    // Last activity as checkpoints record it (a stream in two route groups counts its latest).
    const w = new Database(file);
    const put = w.prepare("INSERT INTO stream_state (grp, stream, resident, last_active, assembler, seq) VALUES (?, ?, 1, ?, '{}', 0)");
    put.run('m', 'garden/ws1', 100);
    put.run('m', 'garden/ws2', 300);
    put.run('m', 'shed/ws1', 200);
    put.run('m+n', 'garden/ws1', 400);
    put.run('m', 'odd_%name', 50);
    w.close();
    const api = new DashboardApi(() => s.db, () => [{ name: 'm', provider: 'cpu', mode: 'stateful', path: '', card: null }]);
    const ids = (q: string): string[] => (api.handle('/api/streams', new URLSearchParams(q)).body as Array<{ id: string }>).map((x) => x.id);
    assert.deepEqual(ids(''), ['garden/ws1', 'garden/ws2', 'shed/ws1', 'odd_%name', 'never-checkpointed']);
    assert.deepEqual(ids('search=GARDEN'), ['garden/ws1', 'garden/ws2'], 'case-insensitive substring');
    assert.deepEqual(ids('search=_%'), ['odd_%name'], '% and _ are literal');
    assert.deepEqual(ids('search=ws&limit=2'), ['garden/ws1', 'garden/ws2']);
    assert.deepEqual(ids('search=nothing'), []);
    assert.equal(api.handle('/api/streams/%E0%A4%A/series', new URLSearchParams()).status, 400);
    await s.stop();
    tmp.remove();
  });
});
