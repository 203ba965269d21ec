import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect, type Server } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createServer } from 'node:tls';
import { freePort } from './support/broker.js';
import { logged, runCli, terminate, waitReady } from './support/child.js';
import { telemetry, waitFor } from './support/fixtures.js';
import { openTestBed, type TestBed } from './support/test-bed.js';

/** A private CA and a server certificate for localhost/127.0.0.1 signed by it (openssl, as an operator makes them). */
function makeCertificates(dir: string): { ca: string; key: string; cert: string } {
  const f = (n: string): string => path.join(dir, n);
  const ossl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'ignore' });
  ossl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=tidecast test CA');
  ossl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost');
  writeFileSync(f('san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  ossl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('san.ext'));
  return { ca: f('ca.pem'), key: f('server.key'), cert: f('server.pem') };
}


/**
 * The broker behind a TLS listener: a TLS server (the test's own certificate)
 * that forwards each connection to the plain broker, as a TLS-terminating
 * proxy in front of Mosquitto does.
 */
describe('TLS to the broker', () => {
  let bed: TestBed;
  let proxy: Server;
  let tlsPort = 0;
  let certs: { ca: string; key: string; cert: string };

  before(async () => {
    bed = await openTestBed();
    certs = makeCertificates(bed.dir);
    tlsPort = await freePort();
    proxy = createServer({ key: readFileSync(certs.key), cert: readFileSync(certs.cert) }, (socket) => {
      const upstream = connect(bed.broker.port, '127.0.0.1');
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    });
    await new Promise<void>((r) => proxy.listen(tlsPort, '127.0.0.1', () => r()));
    bed.defer(() => new Promise<void>((r) => proxy.close(() => r())));
  });

  after(() => bed.close());

  it('a tls block with a plaintext mqtt:// URL is a configuration error (exit 78), not a silent plaintext connection', async () => {
    const file = bed.writeConfig({ mqtt: { tls: { caFile: certs.ca } } });
    const r = await runCli('check-config', '--config', file);
    assert.equal(r.code, 78, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /mqtt\.tls: set, but mqtt\.url "mqtt:\/\/127\.0\.0\.1:\d+" is not a TLS URL/);
    const daemon = bed.spawn(['run', '--config', file]);
    assert.equal(await daemon.exit, 78, daemon.stderr());
  });

  it('verifies the broker against mqtt.tls.caFile and refuses a certificate it cannot verify', async () => {
    const url = `mqtts://localhost:${tlsPort}`;
    // Without the CA: the self-made certificate is refused, the daemon never gets ready.
    const untrusted = bed.spawn(['run', '--config', bed.writeConfig({ mqtt: { url, clientId: 'tls-untrusted' } })]);
    await waitFor(() => logged(untrusted, 'broker connection error') !== undefined, 20_000, 'a TLS error');
    const e = logged(untrusted, 'broker connection error') as { err: { message: string } };
    assert.match(e.err.message, /certificate/i);
    assert.equal(logged(untrusted, 'ready'), undefined, 'not ready without a verified broker');
    await terminate(untrusted);

    const daemon = bed.spawn(['run', '--config', bed.writeConfig({ mqtt: { url, clientId: 'tls-verified', tls: { caFile: certs.ca } } })]);
    await waitReady(daemon);
    assert.equal(logged(daemon, "TLS certificate checks are off (mqtt.tls.rejectUnauthorized: false): anyone on the network path can pose as the broker; give the broker's CA in mqtt.tls.caFile instead"), undefined);
    await bed.publish(telemetry(1, 5));
    await waitFor(() => bed.count('SELECT count(*) n FROM steps') >= 5, 20_000, 'steps through the TLS connection');
    assert.equal(await terminate(daemon), 0, daemon.stderr());
  });

  it('rejectUnauthorized: false connects but says at start that anyone can pose as the broker', async () => {
    const file = bed.writeConfig({ mqtt: { url: `mqtts://127.0.0.1:${tlsPort}`, clientId: 'tls-unchecked', tls: { rejectUnauthorized: false } } });
    const daemon = bed.spawn(['run', '--config', file]);
    await waitReady(daemon);
    const warn = daemon.lines.map((l) => JSON.parse(l) as { level: number; msg: string }).find((l) => /rejectUnauthorized: false/.test(l.msg));
    assert.ok(warn, 'a warning at start');
    assert.equal(warn.level, 40, 'at warn level');
    assert.equal(await terminate(daemon), 0, daemon.stderr());
  });
});
