import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { packageRoot } from '../paths.js';
import type { DashboardApi } from './dashboard-api.js';

export interface HttpEndpointOptions {
  host: string;
  port: number;
  metrics: Metrics;
  readiness(): { ready: boolean; checks: Record<string, boolean> };
  /** The dashboard's JSON API; the page and its assets are served with it. */
  api?: DashboardApi;
  log: Logger;
}

interface Asset { type: string; body: Buffer }

/** The dashboard page and its assets, all local: it works with no internet. */
function loadAssets(): Map<string, Asset> {
  const dir = path.join(packageRoot, 'src', 'http', 'dashboard');
  const uplot = path.dirname(createRequire(import.meta.url).resolve('uplot'));
  const files: Array<[string, string, string]> = [
    ['/', path.join(dir, 'index.html'), 'text/html; charset=utf-8'],
    ['/assets/app.js', path.join(dir, 'app.js'), 'text/javascript; charset=utf-8'],
    ['/assets/style.css', path.join(dir, 'style.css'), 'text/css; charset=utf-8'],
    ['/assets/uPlot.iife.min.js', path.join(uplot, 'uPlot.iife.min.js'), 'text/javascript; charset=utf-8'],
    ['/assets/uPlot.min.css', path.join(uplot, 'uPlot.min.css'), 'text/css; charset=utf-8'],
  ];
  return new Map(files.map(([url, file, type]) => [url, { type, body: readFileSync(file) }]));
}

/**
 * The daemon's HTTP endpoint (loopback by default): `/metrics` in Prometheus
 * text format, `/healthz` (the process answers) and `/readyz` (broker
 * connected, store writable, models loaded; 503 with the failing checks).
 */
export class HttpEndpoint {
  readonly #opts: HttpEndpointOptions;
  readonly #assets: Map<string, Asset>;
  #server: Server | null = null;
  address: { host: string; port: number } | null = null;

  constructor(options: HttpEndpointOptions) {
    this.#opts = options;
    this.#assets = options.api ? loadAssets() : new Map();
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
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (this.#opts.api && path.startsWith('/api/')) {
      const r = this.#opts.api.handle(path, url.searchParams);
      res.writeHead(r.status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(r.body));
      return;
    }
    const asset = this.#assets.get(path === '/index.html' ? '/' : path);
    if (asset) {
      res.writeHead(200, { 'content-type': asset.type, 'cache-control': 'no-cache' }).end(asset.body);
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
