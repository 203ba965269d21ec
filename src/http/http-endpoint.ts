import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';

export interface HttpEndpointOptions {
  host: string;
  port: number;
  metrics: Metrics;
  readiness(): { ready: boolean; checks: Record<string, boolean> };
  log: Logger;
}

/**
 * The daemon's HTTP endpoint (loopback by default): `/metrics` in Prometheus
 * text format, `/healthz` (the process answers) and `/readyz` (broker
 * connected, store writable, models loaded; 503 with the failing checks).
 */
export class HttpEndpoint {
  readonly #opts: HttpEndpointOptions;
  #server: Server | null = null;
  address: { host: string; port: number } | null = null;

  constructor(options: HttpEndpointOptions) {
    this.#opts = options;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        this.#opts.log.error({ err, url: req.url }, 'http handler failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error\n');
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#opts.port, this.#opts.host, () => resolve());
    });
    this.#server = server;
    const a = server.address() as AddressInfo;
    this.address = { host: a.address, port: a.port };
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    switch (path) {
      case '/metrics': {
        const body = await this.#opts.metrics.text();
        res.writeHead(200, { 'content-type': this.#opts.metrics.contentType }).end(body);
        return;
      }
      case '/healthz':
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
        return;
      case '/readyz': {
        const r = this.#opts.readiness();
        res.writeHead(r.ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(r) + '\n');
        return;
      }
      default:
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
}
