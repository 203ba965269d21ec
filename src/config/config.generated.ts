// Generated from config/tidecast.schema.json by `npm run gen:config-types`: edit the schema, not this file
// (test/config-types.test.ts fails while the two differ). These are the shapes ajv leaves after it has
// validated a file with useDefaults: a key the schema requires or gives a default is always there, any
// other key is optional. src/config/config.ts adds what loadConfig fills in beyond the schema.

/**
 * tidecast.yaml: MQTT in, stateful forecasts, SQLite out. Defaults shown here apply when a key is
 * left out.
 */
export interface TidecastConfig {
  readonly $schema?: string;
  readonly log: LogConfig;
  readonly mqtt: MqttConfig;
  /**
   * Models by name. A name of a shipped model (weather-lstm, weather-gru, weather-rnn,
   * weather-brnn) needs no path.
   */
  readonly models: Readonly<Record<string, ModelConfig>>;
  readonly routes: readonly RouteConfig[];
  readonly batching: BatchingConfig;
  readonly store: StoreConfig;
  /**
   * What a committed message survives, and how often stream state is checkpointed
   * (docs/RELIABILITY.md).
   */
  readonly durability: DurabilityConfig;
  /** Bounds that keep memory flat whatever arrives. */
  readonly limits: LimitsConfig;
  /**
   * Prediction intervals for every numeric forecast of a model whose card carries held-out
   * residuals (calibration): seeded from them, then calibrated online on each stream's own
   * residuals (quantile tracking). Stored with each forecast, published in its message.
   */
  readonly intervals: IntervalsConfig;
  /**
   * Threshold alerts: per stream, the probability that a model's forecast of a target crosses a
   * threshold (from its prediction intervals), or that a classification target takes a label. An
   * alert turns on when that probability reaches probability and off when it falls below
   * clearProbability; each change is an event (kind alert:NAME), a retained MQTT message on topic
   * and a Home Assistant binary sensor. Exactly one of above, below and label. Default: `[]`.
   */
  readonly alerts: ReadonlyArray<{
    /** Letters, digits, _ and -: used in the event kind, the topic and the entity id. */
    readonly name: string;
    readonly model: string;
    /** A target of the model's card. */
    readonly target: string;
    /** Alert on P(target > above). */
    readonly above?: number;
    /** Alert on P(target < below). */
    readonly below?: number;
    /** For a classification target: alert on the probability of this label. */
    readonly label?: string;
    /**
     * Horizons (steps ahead) to watch; default: all of the card's. The alert's probability is the
     * largest over them.
     */
    readonly horizons?: readonly number[];
    /** The alert turns on when the probability reaches this. */
    readonly probability: number;
    /**
     * The alert turns off when the probability falls below this (hysteresis); default: probability
     * - 0.1, 0 at least.
     */
    readonly clearProbability?: number;
    /** Only the streams of this route (by name); default: every stream of the model. */
    readonly route?: string;
    /** Only these streams (exact ids). */
    readonly streams?: readonly string[];
    /**
     * Retained state topic: {alert}, {stream}, {model} and the route's named wildcards. Published
     * when the state changes and at a stream's first forecast. Default:
     * `"tidecast/alert/{alert}/{stream}"`.
     */
    readonly topic: string;
  }>;
  /**
   * Drift detection for every numeric target of a model whose card carries held-out residuals: per
   * stream, a two-sided CUSUM on the signed error in held-out MAEs (bias) and the miss rate of the
   * card's held-out interval (coverage). A (stream, target) turning on or off is a model_drift
   * event, a retained message on topic, a Home Assistant binary sensor and the tidecast_drift_on
   * and tidecast_drift_changes_total metrics.
   */
  readonly drift: DriftConfig;
  readonly publish: PublishConfig;
  /** The HTTP endpoint: /metrics (Prometheus), /healthz, /readyz, the dashboard and its API. */
  readonly http: HttpConfig;
  readonly stats: StatsConfig;
  /**
   * Home Assistant MQTT discovery: each stream's forecast (per model, target and horizon) as a
   * sensor entity.
   */
  readonly homeAssistant: HomeAssistantConfig;
  readonly shutdown: ShutdownConfig;
}

export interface LogConfig {
  /** Default: `"info"`. */
  readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

export interface MqttConfig {
  /** Broker URL, e.g. mqtt://localhost:1883 or mqtts://broker:8883. */
  readonly url: string;
  /**
   * Fixed client id: the broker keeps this session's subscriptions and queued QoS 1 messages while
   * tidecast is away. Default: `"tidecast"`.
   */
  readonly clientId: string;
  /** 4 = MQTT 3.1.1, 5 = MQTT 5. Default: `4`. */
  readonly protocolVersion: 4 | 5;
  readonly username?: string;
  /**
   * File holding the broker password (e.g. a systemd credential). The password itself never goes in
   * this file or in logs.
   */
  readonly passwordFile?: string;
  /** Default: `30`. */
  readonly keepaliveS: number;
  /** First reconnect delay; doubles after each failure up to reconnectMaxMs. Default: `1000`. */
  readonly reconnectPeriodMs: number;
  /** Default: `30000`. */
  readonly reconnectMaxMs: number;
  /** Default: `10000`. */
  readonly connectTimeoutMs: number;
  /** Larger messages are dead-lettered as too_large (the first 1 KiB is kept). Default: `65536`. */
  readonly maxPayloadBytes: number;
  /**
   * Retained 'online' on connect, 'offline' on clean stop and as the last will. Default:
   * `"tidecast/status"`.
   */
  readonly availabilityTopic: string;
  readonly tls?: {
    readonly caFile?: string;
    readonly certFile?: string;
    readonly keyFile?: string;
    /** Default: `true`. */
    readonly rejectUnauthorized: boolean;
  };
}

export interface ModelConfig {
  /** The .onnx file; relative paths are relative to this config file. */
  readonly path?: string;
  /** Model card; default: NAME.card.json beside the model. */
  readonly card?: string;
  /** onnxruntime intra-op threads. Default: `1`. */
  readonly threads: number;
  /**
   * Where the model's onnxruntime session runs. auto: on the main thread while a batch's run holds
   * it 2 ms or less, then (after 3 longer runs in a row) on a worker thread of its own. true: on
   * its own worker thread from the start, so that a batch never holds the event loop that reads
   * MQTT and acknowledges messages. false: always on the main thread. Default: `"auto"`.
   */
  readonly sessionThread: boolean | 'auto';
  /**
   * Execution providers in order of preference, e.g. [cuda, cpu] or [webgpu, cpu]. Each is tried in
   * turn; a failure is logged with its reason and the next one is tried. The one in use is logged,
   * shown by tidecast inspect --providers and exported as tidecast_model_provider_info. Default:
   * `["cpu"]`.
   */
  readonly providers: readonly ProviderConfig[];
  /**
   * Refuse to fall back: if the first provider fails, tidecast exits with TIDECAST_ERR_PROVIDER
   * (exit code 69) instead of running on the next one. Default: `false`.
   */
  readonly strictProviders: boolean;
  /**
   * How the graph's inputs and outputs map, when tidecast cannot tell from names and shapes (e.g.
   * Keras/tf2onnx exports). Overrides the card's signature.
   */
  readonly signature?: {
    /** The input that carries the features. */
    readonly input?: string;
    /** The output that carries the forecast. */
    readonly output?: string;
    /** batch-first: [batch, time, features]; time-major: [time, batch, features]. */
    readonly layout?: 'batch-first' | 'time-major';
    /**
     * Each recurrent state: the input fed with the state, and the output that returns it after the
     * step.
     */
    readonly states?: ReadonlyArray<{
      readonly input: string;
      readonly output: string;
    }>;
  };
}

export interface RouteConfig {
  readonly name?: string;
  /**
   * Topic filter with named wildcards: sensors/+site/+device/telemetry; #rest matches the remaining
   * levels.
   */
  readonly topic: string;
  /** Stream id template, e.g. {site}/{device}; {topic} is the whole topic. Default: `"{topic}"`. */
  readonly stream: string;
  /** Models run on every step of this route's streams. */
  readonly models: readonly string[];
  readonly decoder: DecoderConfig;
  /** How samples become one vector per model step (the card's stepSeconds). */
  readonly resample: ResampleConfig;
}

export interface BatchingConfig {
  /** Default: `256`. */
  readonly maxBatch: number;
  /** Default: `5`. */
  readonly maxDelayMs: number;
}

export interface StoreConfig {
  /** SQLite file; relative paths are relative to this config file. Default: `"tidecast.db"`. */
  readonly path: string;
  /** Steps, predictions, events and dead letters older than this are pruned. Default: `30`. */
  readonly retentionDays: number;
  /**
   * A stream out of memory (spilled after limits.idleTtlS) and idle this long is forgotten: its
   * saved state, error sums, id and Home Assistant entities (its steps and forecasts are pruned by
   * retentionDays already). If it comes back it starts afresh. At least retentionDays, which is the
   * default.
   */
  readonly forgetStreamsAfterDays?: number;
  /** Default: `3600`. */
  readonly pruneIntervalS: number;
  /**
   * Cap on the database file (0: only the disk limits it). Reaching it behaves like a full disk:
   * tidecast stops acknowledging messages, logs, retries, and resumes when rows are pruned or the
   * cap is raised. Default: `0`.
   */
  readonly maxSizeMiB: number;
  /**
   * Dead letters kept at most, in MiB: at each pruning the oldest beyond it are deleted (besides
   * those older than retentionDays). 0: by age only. Default: `64`.
   */
  readonly deadLetterMaxMiB: number;
  /**
   * quick: PRAGMA quick_check on the database and the input log at start (about 2 ms per MB); a
   * damaged file stops tidecast with exit 74 before it acknowledges anything. off: no check (a very
   * large database that is checked otherwise). Default: `"quick"`.
   */
  readonly integrityCheck: 'quick' | 'off';
}

/**
 * What a committed message survives, and how often stream state is checkpointed
 * (docs/RELIABILITY.md).
 */
export interface DurabilityConfig {
  /**
   * process: survives a crash or kill of tidecast (SQLite synchronous=NORMAL; the default, tens of
   * thousands of messages/s). power: also survives power loss or a kernel panic (synchronous=FULL:
   * one fsync per acknowledged message; expect hundreds to a few thousand messages/s on an SD card
   * or SSD). Default: `"process"`.
   */
  readonly level: 'process' | 'power';
  /**
   * How often each changed stream's state is written with the input-log position it reflects. A
   * restart replays the inputs logged since the last checkpoint: shorter means faster recovery,
   * longer means less writing. Default: `30`.
   */
  readonly checkpointIntervalS: number;
}

/** Bounds that keep memory flat whatever arrives. */
export interface LimitsConfig {
  /**
   * Most streams held in memory. A message for a new stream beyond it is dead-lettered as
   * stream_limit (counted in tidecast_dead_letters_total). Default: `100000`.
   */
  readonly maxStreams: number;
  /**
   * A stream without data for this long is spilled to SQLite at the next checkpoint and leaves
   * memory; it is restored, state intact, when data returns. 0 keeps every stream in memory.
   * Default: `3600`.
   */
  readonly idleTtlS: number;
  /**
   * Steps a model may have waiting for inference; beyond, tidecast stops acknowledging messages
   * until it catches up (the broker holds them). The default keeps four full batches waiting,
   * enough to keep the engine busy; a deeper queue adds latency under overload and
   * garbage-collector work (steps that wait long enough to be promoted). Default: `1024`.
   */
  readonly maxQueuedSteps: number;
  /**
   * Samples timestamped more than this ahead of their arrival are dead-lettered as bad_timestamp (a
   * wrong clock must not push a stream into the future). Default: `3600`.
   */
  readonly maxFutureS: number;
  /**
   * Most distinct samples one step of one stream takes; more are dead-lettered as too_many_samples.
   * Default: `10000`.
   */
  readonly maxSamplesPerStep: number;
  /**
   * Dead letters stored per minute in all; refusals beyond are counted
   * (tidecast_dead_letters_total, tidecast_dead_letters_unstored_total) but not stored, so a flood
   * of bad messages cannot fill the disk. Each dead letter keeps the first 1 KiB of the payload,
   * topic and detail. Default: `1000`.
   */
  readonly deadLettersPerMinute: number;
  /**
   * Dead letters stored per minute for one source (its stream, or its topic when it has none): one
   * broken device cannot use up deadLettersPerMinute. Default: `20`.
   */
  readonly deadLettersPerSourcePerMinute: number;
}

/**
 * Prediction intervals for every numeric forecast of a model whose card carries held-out residuals
 * (calibration): seeded from them, then calibrated online on each stream's own residuals (quantile
 * tracking). Stored with each forecast, published in its message.
 */
export interface IntervalsConfig {
  /** Central coverage levels; [] turns intervals off. Default: `[0.8,0.95]`. */
  readonly levels: readonly number[];
  /**
   * How far one scored forecast moves a bound, as a fraction of the half-width of the card's
   * held-out interval at that level: higher follows a changing stream faster, with noisier (so on
   * average wider) intervals. Default: `0.03`.
   */
  readonly learningRate: number;
}

/**
 * Drift detection for every numeric target of a model whose card carries held-out residuals: per
 * stream, a two-sided CUSUM on the signed error in held-out MAEs (bias) and the miss rate of the
 * card's held-out interval (coverage). A (stream, target) turning on or off is a model_drift event,
 * a retained message on topic, a Home Assistant binary sensor and the tidecast_drift_on and
 * tidecast_drift_changes_total metrics.
 */
export interface DriftConfig {
  /** Default: `true`. */
  readonly enabled: boolean;
  /**
   * CUSUM allowance k, in held-out MAEs: a lasting mean error (actual - forecast, averaged over the
   * horizons scored at a step) beyond +-k adds up, one within it does not. Default: `0.75`.
   */
  readonly allowance: number;
  /**
   * CUSUM threshold h, in held-out MAEs: drift on when a sum passes it (a bias b is caught in about
   * h / (b - k) steps), off when both are back under h/2. Default: `15`.
   */
  readonly threshold: number;
  /** Level of the card's held-out interval whose coverage is watched. Default: `0.8`. */
  readonly coverageLevel: number;
  /**
   * Drift on when the recent miss rate of that interval passes 1 - coverageLevel + coverageBand,
   * off under 1 - coverageLevel + coverageBand / 2. Default: `0.25`.
   */
  readonly coverageBand: number;
  /**
   * Memory of the miss rate in steps (exponentially weighted, weight 1 / coverageSteps). Default:
   * `30`.
   */
  readonly coverageSteps: number;
  /**
   * Retained state topic: {model}, {stream}, {target} and the route's named wildcards. Published
   * when a state changes. Default: `"tidecast/drift/{model}/{stream}/{target}"`.
   */
  readonly topic: string;
}

export interface PublishConfig {
  /** Default: `true`. */
  readonly enabled: boolean;
  /**
   * Topic template: {stream}, {model} and the route's named wildcards. Default:
   * `"tidecast/forecast/{model}/{stream}"`.
   */
  readonly topic: string;
  /** Default: `0`. */
  readonly qos: 0 | 1 | 2;
  /** Default: `false`. */
  readonly retain: boolean;
}

/** The HTTP endpoint: /metrics (Prometheus), /healthz, /readyz, the dashboard and its API. */
export interface HttpConfig {
  /** Default: `true`. */
  readonly enabled: boolean;
  /**
   * Listen address; loopback by default. 0.0.0.0 to let a remote Prometheus scrape. Default:
   * `"127.0.0.1"`.
   */
  readonly host: string;
  /** 0 picks a free port (logged). Default: `9464`. */
  readonly port: number;
  /**
   * File holding a bearer token (at least 16 characters; $CREDENTIALS_DIRECTORY/… under systemd).
   * With it, the dashboard and the API answer only requests with `Authorization: Bearer <token>`,
   * or the cookie set by opening the dashboard once with ?token=<token>; /healthz and /readyz stay
   * open, /metrics too unless protectMetrics.
   */
  readonly tokenFile?: string;
  /**
   * Require the token for /metrics as well (Prometheus: authorization.credentials_file). Default:
   * `false`.
   */
  readonly protectMetrics: boolean;
  /**
   * Host header names answered besides localhost, IP addresses, this machine's hostname and
   * http.host; any other gets 403 (a DNS-rebinding page cannot read the API). Add the name you
   * reach the dashboard by, e.g. tidecast.lan. Default: `[]`.
   */
  readonly allowedHosts: readonly string[];
  /**
   * Dashboard and API requests answered per second at most (the HTTP thread paces them; one that
   * would wait over 1 s gets 503). Bounds what any number of dashboards costs the machine.
   * /metrics, /healthz and /readyz are not paced. Default: `250`.
   */
  readonly ratePerS: number;
}

export interface StatsConfig {
  /** Publish counters to stats.topic every N seconds; 0 turns it off. Default: `60`. */
  readonly intervalS: number;
  /** Default: `"tidecast/stats"`. */
  readonly topic: string;
}

/**
 * Home Assistant MQTT discovery: each stream's forecast (per model, target and horizon) as a sensor
 * entity.
 */
export interface HomeAssistantConfig {
  /** Default: `false`. */
  readonly discovery: boolean;
  /** Default: `"homeassistant"`. */
  readonly prefix: string;
  /**
   * Most entities announced (stream × model × target × horizon: 12 per stream for weather-lstm);
   * later streams are not announced, with one warning. Their forecasts are still stored and
   * published. Default: `2000`.
   */
  readonly maxEntities: number;
}

export interface ShutdownConfig {
  /**
   * Longest a stop waits for queued steps to be predicted and committed. Keep systemd's
   * TimeoutStopSec above it. Default: `10000`.
   */
  readonly drainTimeoutMs: number;
}

export type ProviderConfig =
  | 'cpu' | 'cuda' | 'tensorrt' | 'webgpu' | 'dml' | 'coreml'
  | {
      readonly name: 'cpu' | 'cuda' | 'tensorrt' | 'webgpu' | 'dml' | 'coreml';
      /** GPU index (cuda, tensorrt, dml). */
      readonly deviceId?: number;
    };

export type DecoderConfig =
  | {
      readonly type: 'json';
      /**
       * Feature name (as in the model card) -> JSON field path. Features left out are read from a
       * field of their own name.
       */
      readonly features?: Readonly<Record<string, string>>;
      readonly timestamp?: TimestampConfig;
      /**
       * Allow messages that carry only some of the features (the rest arrive on other topics or
       * messages). Default: `false`.
       */
      readonly partial: boolean;
    }
  | {
      readonly type: 'number';
      /**
       * The one feature the payload carries; may name a topic wildcard, e.g. "{feature}" with topic
       * weather/+station/+feature.
       */
      readonly feature: string;
      readonly timestamp?: never;
    }
  | {
      readonly type: 'csv';
      /** Names of the CSV columns, in order; feature columns use the card's feature names. */
      readonly columns: readonly string[];
      readonly timestamp?: TimestampConfig;
      /** Default: `","`. */
      readonly separator: string;
    };

/** How samples become one vector per model step (the card's stepSeconds). */
export interface ResampleConfig {
  /** Aggregation per feature over [t, t+step); the key "default" sets it for the others [mean]. */
  readonly aggregate: Readonly<Record<string, 'mean' | 'last' | 'sum' | 'min' | 'max'>>;
  /**
   * Samples up to this long after their step's end are still placed in it; later ones are
   * dead-lettered as late. Default: `0`.
   */
  readonly latenessMs: number;
  /**
   * close: a step fires when its bucket closes (right for several samples per step). complete: as
   * soon as every feature has a sample (one message per step). Default: `"close"`.
   */
  readonly emit: 'complete' | 'close';
  /**
   * Also close buckets when the clock passes their end plus the lateness (live streams; false for
   * replays of history). Default: `true`.
   */
  readonly wallClock: boolean;
  /**
   * A missing feature repeats its last value for at most this many steps; beyond, the step is
   * skipped. Default: `1`.
   */
  readonly maxFillSteps: number;
  /**
   * More steps than this without a step reset the stream's recurrent state (logged, counted, stored
   * as an event). Default: `3`.
   */
  readonly maxGapSteps: number;
}

export interface TimestampConfig {
  /**
   * JSON field path (a.b.c), or CSV column name, of the timestamp. Without a timestamp the arrival
   * time is used.
   */
  readonly field: string;
  /** Default: `"iso"`. */
  readonly format: TimestampFormat;
}

export type TimestampFormat = 'epoch_s' | 'epoch_ms' | 'iso';
