import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { isIP, type AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import path from 'node:path';
import { packageRoot } from '../paths.js';
import type { ApiRunner } from './api-runner.js';

export interface HttpEndpointOptions {
  host: string;
  port: number;
  /** The Prometheus text (from the main thread's registry). */
  metrics(): Promise<{ contentType: string; body: string }>;
  /** Asked of the main thread at each /readyz. */
  readiness(): Promise<{ ready: boolean; checks: Record<string, boolean> }>;
  /** Whether the main thread's event loop turns (null), or for how long it has not (ms). */
  stalledMs(): number | null;
  /** The dashboard's JSON API; the page and its assets are served with it. */
  api?: ApiRunner;
  /** A bearer token the dashboard and the API require (and /metrics, with `protectMetrics`). */
  token?: string;
  protectMetrics?: boolean;
  /** Host header names answered besides localhost, IP addresses, this machine's name and the bind address. */
  allowedHosts?: readonly string[];
  /** Dashboard and API requests answered per second at most; more wait their turn (up to 1 s), then get 503. */
  ratePerS?: number;
  log: { error(obj: object, msg: string): void };
}

/** The longest a request waits for its turn under `ratePerS` before it is refused. */
const MAX_QUEUE_MS = 1000;

/**
 * Sent with every answer. The dashboard loads only its own scripts and styles
 * (no inline script), may not be framed, and sends no referrer.
 */
const SECURITY_HEADERS: OutgoingHttpHeaders = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
};

const TOKEN_COOKIE = 'tidecast_token';
const TOKEN_COOKIE_VALUE = new RegExp(`(?:^|;\\s*)${TOKEN_COOKIE}=([^;]+)`);

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();

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
 * connected, store writable, models loaded; 503 with the failing checks),
 * and the dashboard with its API.
 *
 * Hardened for a browser on the same machine or network: a request whose
 * Host header is not an allowed name is refused (403), so a DNS-rebinding
 * page cannot read the API; with a token, the dashboard and the API answer
 * only a request carrying it (`Authorization: Bearer`, or the cookie that
 * opening the dashboard with `?token=` sets); every answer carries a
 * content security policy that forbids framing and inline script; a path
 * with bad percent-encoding is a 400. It runs on a thread of its own
 * (`http-thread.ts`), with the API's database connection.
 */
export class HttpEndpoint {
  readonly #opts: HttpEndpointOptions;
  readonly #assets: Map<string, Asset>;
  readonly #tokenHash: Buffer | null;
  readonly #hosts: Set<string>;
  readonly #slotMs: number;
  /** When the next dashboard or API request may be answered (the pacing of `ratePerS`). */
  #nextSlot = 0;
  #server: Server | null = null;
  address: { host: string; port: number } | null = null;

  constructor(options: HttpEndpointOptions) {
    this.#opts = options;
    this.#assets = options.api ? loadAssets() : new Map();
    this.#tokenHash = options.token ? sha256(options.token) : null;
    this.#slotMs = 1000 / (options.ratePerS ?? 250);
    this.#hosts = new Set(['localhost', hostname().toLowerCase(), options.host.toLowerCase(), ...(options.allowedHosts ?? []).map((h) => h.toLowerCase())]);
  }

  /** Whether a Host header names this endpoint: an allowed name or an IP address (which no DNS rebinding can produce), any port. */
  #hostAllowed(header: string | undefined): boolean {
    if (header === undefined) return true; // HTTP/1.0: no name to rebind
    const m = /^(\[[^\]]+\]|[^:]+)(?::\d+)?$/.exec(header.trim().toLowerCase());
    if (!m) return false;
    const name = m[1]!.replace(/^\[|\]$/g, '').replace(/\.$/, '');
    return isIP(name) !== 0 || this.#hosts.has(name) || name.endsWith('.localhost');
  }

  /** Whether a request carries the token (always true without one). */
  #authorized(req: IncomingMessage, url: URL): boolean {
    const expected = this.#tokenHash;
    if (!expected) return true;
    const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const cookie = TOKEN_COOKIE_VALUE.exec(req.headers.cookie ?? '')?.[1];
    const given = bearer ?? (cookie !== undefined ? decodeURIComponentSafe(cookie) : undefined) ?? url.searchParams.get('token') ?? undefined;
    return given !== undefined && timingSafeEqual(sha256(given), expected);
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
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v!);
    if (!this.#hostAllowed(req.headers.host)) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('this Host is not served here (add it to http.allowedHosts)\n');
      return;
    }
    let url: URL;
    let path: string;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
      decodeURIComponent(url.pathname); // throws on bad percent-encoding
      path = url.pathname;
    } catch {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('bad request: malformed URL or percent-encoding\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    // Health stays open (it tells nothing but up/ready); the rest needs the token when there is one.
    const open = path === '/healthz' || path === '/readyz' || (path === '/metrics' && !this.#opts.protectMetrics);
    if (!open && !this.#authorized(req, url)) {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer realm="tidecast"' }).end('a token is required (http.tokenFile): Authorization: Bearer <token>, or open the dashboard once with ?token=<token>\n');
      return;
    }
    if (this.#tokenHash && url.searchParams.has('token') && (path === '/' || path === '/index.html')) {
      // Keep the token in an HttpOnly cookie for the page's own requests, and out of the address bar and history.
      res.writeHead(303, {
        'set-cookie': `${TOKEN_COOKIE}=${encodeURIComponent(url.searchParams.get('token')!)}; Path=/; HttpOnly; SameSite=Strict`,
        location: '/',
      }).end();
      return;
    }
    if (!open) {
      // Paced: however many clients ask, this thread answers at most ratePerS of them a second, so what it
      // costs the machine is bounded; a closed-loop client simply gets its answers later.
      const now = performance.now();
      const slot = Math.max(now, this.#nextSlot);
      if (slot - now > MAX_QUEUE_MS) {
        res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' }).end('busy: too many dashboard and API requests; retry in a second\n');
        return;
      }
      this.#nextSlot = slot + this.#slotMs;
      if (slot > now) await new Promise((r) => setTimeout(r, slot - now));
    }
    if (this.#opts.api && path.startsWith('/api/')) {
      url.searchParams.delete('token');
      const r = await this.#opts.api.request(path, url.searchParams.toString());
      res.writeHead(r.status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...(r.status === 503 ? { 'retry-after': '1' } : {}) }).end(r.body);
      return;
    }
    const asset = this.#assets.get(path === '/index.html' ? '/' : path);
    if (asset) {
      res.writeHead(200, { 'content-type': asset.type, 'cache-control': 'no-cache' }).end(asset.body);
      return;
    }
    switch (path) {
      case '/metrics': {
        const m = await this.#opts.metrics();
        res.writeHead(200, { 'content-type': m.contentType }).end(m.body);
        return;
      }
      case '/healthz': {
        // Answered on the HTTP thread, about the main thread: ok while its event loop turns.
        const stalled = this.#opts.stalledMs();
        if (stalled === null) res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
        else res.writeHead(503, { 'content-type': 'text/plain' }).end(`the main event loop has not turned for ${Math.round(stalled)} ms\n`);
        return;
      }
      case '/readyz': {
        const r = await this.#opts.readiness();
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
    this.#opts.api?.close();
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
}

function decodeURIComponentSafe(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}
