/** The validated configuration (config/tidecast.schema.json), defaults filled in. */

export type TimestampFormat = 'epoch_s' | 'epoch_ms' | 'iso';

export interface TimestampConfig {
  readonly field: string;
  readonly format: TimestampFormat;
}

export type DecoderConfig =
  | { readonly type: 'json'; readonly features?: Readonly<Record<string, string>>; readonly timestamp?: TimestampConfig; readonly partial?: boolean }
  | { readonly type: 'number'; readonly feature: string }
  | { readonly type: 'csv'; readonly columns: readonly string[]; readonly timestamp?: TimestampConfig; readonly separator: string };

export interface ResampleConfig {
  readonly aggregate: Readonly<Record<string, 'mean' | 'last' | 'sum' | 'min' | 'max'>>;
  readonly latenessMs: number;
  readonly emit: 'complete' | 'close';
  readonly wallClock: boolean;
  readonly maxFillSteps: number;
  readonly maxGapSteps: number;
}

export interface RouteConfig {
  readonly name?: string;
  readonly topic: string;
  readonly stream: string;
  readonly models: readonly string[];
  readonly decoder: DecoderConfig;
  readonly resample: ResampleConfig;
}

export type ProviderConfig = string | { readonly name: string; readonly deviceId?: number };

export interface ModelConfig {
  readonly path?: string;
  readonly card?: string;
  readonly threads: number;
  /** Where the session runs: 'auto' (default: the main thread until its runs take over 2 ms), true (a session thread), false (the main thread). */
  readonly sessionThread: boolean | 'auto';
  readonly providers: readonly ProviderConfig[];
  readonly strictProviders: boolean;
  readonly signature?: {
    readonly input?: string;
    readonly output?: string;
    readonly layout?: 'batch-first' | 'time-major';
    readonly states?: ReadonlyArray<{ readonly input: string; readonly output: string }>;
  };
}

export interface TidecastConfig {
  readonly log: { readonly level: string };
  readonly mqtt: {
    readonly url: string;
    readonly clientId: string;
    readonly protocolVersion: 4 | 5;
    readonly username?: string;
    readonly passwordFile?: string;
    readonly keepaliveS: number;
    readonly reconnectPeriodMs: number;
    readonly reconnectMaxMs: number;
    readonly connectTimeoutMs: number;
    readonly maxPayloadBytes: number;
    readonly availabilityTopic: string;
    readonly tls?: { readonly caFile?: string; readonly certFile?: string; readonly keyFile?: string; readonly rejectUnauthorized: boolean };
  };
  readonly models: Readonly<Record<string, ModelConfig>>;
  readonly routes: readonly RouteConfig[];
  readonly batching: { readonly maxBatch: number; readonly maxDelayMs: number };
  readonly store: { readonly path: string; readonly retentionDays: number; readonly pruneIntervalS: number; readonly maxSizeMiB: number; readonly deadLetterMaxMiB: number; readonly forgetStreamsAfterDays?: number; readonly integrityCheck: 'quick' | 'off' };
  readonly durability: { readonly level: 'process' | 'power'; readonly checkpointIntervalS: number };
  readonly limits: {
    readonly maxStreams: number;
    readonly idleTtlS: number;
    readonly maxQueuedSteps: number;
    readonly maxFutureS: number;
    readonly maxSamplesPerStep: number;
    readonly deadLettersPerMinute: number;
    readonly deadLettersPerSourcePerMinute: number;
  };
  readonly publish: { readonly enabled: boolean; readonly topic: string; readonly qos: 0 | 1 | 2; readonly retain: boolean };
  readonly http: { readonly enabled: boolean; readonly host: string; readonly port: number; readonly tokenFile?: string; readonly protectMetrics: boolean; readonly allowedHosts: readonly string[]; readonly ratePerS: number };
  readonly stats: { readonly intervalS: number; readonly topic: string };
  readonly homeAssistant: { readonly discovery: boolean; readonly prefix: string; readonly maxEntities: number };
  readonly shutdown: { readonly drainTimeoutMs: number };
}

/** A loaded configuration: the values, where they came from, and secrets read from files. */
export interface LoadedConfig {
  readonly config: TidecastConfig;
  /** The file it was read from. */
  readonly file: string;
  /** Environment variables that overrode a value (names only, never values). */
  readonly overrides: readonly string[];
  /** Secrets read from the files the config names; never logged. */
  readonly secrets: { readonly password?: string; readonly ca?: Buffer; readonly cert?: Buffer; readonly key?: Buffer; readonly httpToken?: string };
}
