/**
 * A child process of the api-load bench: CLIENTS concurrent API clients that
 * loop (the stream list, and series of distinct streams) until SIGTERM, then
 * print how many answers of each status they got. Run apart and at the lowest
 * priority, as clients on other machines would be: the bench measures what
 * the requests cost tidecast, not what generating them costs this machine.
 */
import { Agent, request } from 'node:http';

const [base, clients] = [process.argv[2]!, Number(process.argv[3])];
const u = new URL(base);
// Kept-alive connections, one per client, as browsers keep theirs.
const agent = new Agent({ keepAlive: true, maxSockets: clients });
let done = false;
const answers: Record<string, number> = {};

function get(p: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: u.hostname, port: u.port, path: p, agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.end();
  });
}

const loops = Array.from({ length: clients }, async (_, i) => {
  for (let j = 0; !done; j++) {
    const s = await get(j % 2 === 0 ? '/api/streams' : `/api/streams/g${i % 100}%2Fd${i}/series?limit=${500 + i}`);
    answers[s] = (answers[s] ?? 0) + 1;
  }
});
process.on('SIGTERM', () => {
  done = true;
  void Promise.all(loops).then(() => {
    process.stdout.write(JSON.stringify(answers) + '\n');
    process.exit(0);
  });
});
process.stdout.write('started\n');
