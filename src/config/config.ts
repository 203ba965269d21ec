/**
 * The configuration as loadConfig returns it. The shapes come from
 * config/tidecast.schema.json through config.generated.ts (`npm run
 * gen:config-types`); this file adds only what loadConfig fills in beyond the
 * schema's own defaults, because those depend on other values.
 */
import type * as Schema from './config.generated.js';

export type {
  BatchingConfig,
  DecoderConfig,
  DurabilityConfig,
  HomeAssistantConfig,
  HttpConfig,
  LimitsConfig,
  LogConfig,
  MqttConfig,
  ProviderConfig,
  PublishConfig,
  ResampleConfig,
  RouteConfig,
  ShutdownConfig,
  StatsConfig,
  TimestampConfig,
  TimestampFormat,
} from './config.generated.js';

export interface ModelConfig extends Schema.ModelConfig {
  /** Absolute: relative to the config file, or models/NAME.onnx when the name is a shipped model's and no path is given. */
  readonly path: string;
  /** Absolute when given; when not, the loader looks beside the model (NAME.card.json). */
  readonly card?: string;
}

export interface StoreConfig extends Schema.StoreConfig {
  /** Absolute (relative to the config file), or :memory:. */
  readonly path: string;
  /** retentionDays when not given (the schema cannot default one key to another's value). */
  readonly forgetStreamsAfterDays: number;
}

/** The validated configuration, defaults filled in, paths absolute, frozen. */
export interface TidecastConfig extends Omit<Schema.TidecastConfig, 'models' | 'store'> {
  readonly models: Readonly<Record<string, ModelConfig>>;
  readonly store: StoreConfig;
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
