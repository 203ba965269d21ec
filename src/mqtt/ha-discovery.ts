import { createHash } from 'node:crypto';
import type { ModelCard } from '../inference/card.js';
import type { Logger } from '../log.js';

export interface DiscoveryOptions {
  prefix: string;
  availabilityTopic: string;
  /** Most entities announced (stream × model × target × horizon); later ones are not announced. */
  maxEntities?: number;
  /** The threshold alerts (config `alerts`): their binary sensors are retracted with a forgotten stream. */
  alerts?: ReadonlyArray<{ readonly name: string; readonly model: string }>;
  publish(topic: string, payload: string, qos: 0 | 1 | 2, retain: boolean): void;
  log?: Logger;
}

/** Letters, digits, _ and - only (what Home Assistant takes in an object id). */
const readable = (s: string): string => s.replace(/[^A-Za-z0-9_-]+/g, '_').replace(/^_+|_+$/g, '');

/** The first 12 hex digits of the SHA-256 of the parts, NUL-joined: the part of an id that cannot collide. */
const digest = (...parts: string[]): string => createHash('sha256').update(parts.join('\u0000')).digest('hex').slice(0, 12);

/**
 * An object id that stays readable and cannot collide: a readable prefix (cut
 * to 48 characters) and a hash of the exact names. Two streams whose names
 * differ only in characters the prefix replaces (`garden/ws1`,
 * `garden%/ws1`) get different ids.
 */
export function entityId(model: string, stream: string, target: string, horizon: number): string {
  return `tidecast_${readable(`${model}_${stream}_${target}_h${horizon}`).slice(0, 48)}_${digest(model, stream, target, String(horizon))}`;
}

/** The object id of a stream's binary sensor for an alert. */
export function alertEntityId(model: string, stream: string, alert: string): string {
  return `tidecast_${readable(`${model}_${stream}_alert_${alert}`).slice(0, 48)}_${digest(model, stream, 'alert', alert)}`;
}

/** The object id of a stream's binary sensor for a target's drift. */
export function driftEntityId(model: string, stream: string, target: string): string {
  return `tidecast_${readable(`${model}_${stream}_${target}_drift`).slice(0, 48)}_${digest(model, stream, 'drift', target)}`;
}

/** The id of a stream's device: readable prefix and hash, as `entityId`. */
export function deviceId(stream: string): string {
  return `tidecast_${readable(stream).slice(0, 48)}_${digest(stream)}`;
}

/** Object ids of earlier versions (no hash, so two streams could share one): their retained configs are cleared when the entity is announced under its new id. */
const legacyId = (model: string, stream: string, target: string, horizon: number): string => readable(`tidecast_${model}_${stream}_${target}_h${horizon}`);

/**
 * Home Assistant MQTT discovery: the first forecast of a stream × model
 * announces one sensor per target and horizon (retained config messages under
 * `<prefix>/sensor/.../config`), grouped into one device per stream, reading
 * its value from the forecast topic and its availability from tidecast's
 * status topic. A classification target becomes an enum sensor: its state is
 * the most probable label, its attributes the probabilities.
 */
export class HomeAssistantDiscovery {
  readonly #opts: DiscoveryOptions;
  readonly #announced = new Set<string>();
  /** Entities announced (each retained config topic once). */
  #entities = 0;
  #capped = false;

  constructor(options: DiscoveryOptions) {
    this.#opts = options;
  }

  /** Announce a model's entities again on its next forecasts (a hot reload may have changed its card). */
  forget(model: string): void {
    for (const key of this.#announced) if (key.startsWith(`${model}\u0000`)) this.#announced.delete(key);
  }

  /** Where an entity's retained config lives. */
  #configTopic(id: string): string {
    return `${this.#opts.prefix}/sensor/${id}/config`;
  }

  /**
   * Remove a forgotten stream's entities from Home Assistant: an empty
   * retained message on each config topic deletes the entity and clears the
   * broker's copy (retained configs of streams long gone otherwise pile up).
   */
  retract(stream: string, model: string, card: ModelCard): void {
    const key = `${model}\u0000${stream}`;
    if (this.#announced.delete(key)) this.#entities -= card.horizons.length * card.targets.length;
    for (const horizon of card.horizons) {
      for (const t of card.targets) this.#opts.publish(this.#configTopic(entityId(model, stream, t.name, horizon)), '', 1, true);
    }
    for (const a of this.#opts.alerts ?? []) {
      if (a.model !== model) continue;
      if (this.#announced.delete(`${model}\u0000${stream}\u0000${a.name}`)) this.#entities--;
      this.#opts.publish(this.#alertConfigTopic(alertEntityId(model, stream, a.name)), '', 1, true);
    }
    for (const t of card.targets) {
      if (t.labels) continue;
      if (this.#announced.delete(`${model}\u0000${stream}\u0000drift:${t.name}`)) this.#entities--;
      this.#opts.publish(this.#alertConfigTopic(driftEntityId(model, stream, t.name)), '', 1, true);
    }
  }

  #alertConfigTopic(id: string): string {
    return `${this.#opts.prefix}/binary_sensor/${id}/config`;
  }

  /**
   * Announce a stream's threshold alert once, as a binary sensor of the
   * stream's device: on and off from the alert's retained state topic, with
   * its probability, horizon and target time as attributes.
   */
  announceAlert(stream: string, model: string, alert: string, stateTopic: string): void {
    this.#binarySensor(`${model}\u0000${stream}\u0000${alert}`, stream, alertEntityId(model, stream, alert), `${alert} (${model})`, stateTopic, "{{ {'probability': value_json.probability, 'horizon': value_json.horizon, 'issued_at': value_json.issued_at, 'target_time': value_json.target_time} | tojson }}");
  }

  /**
   * Announce a stream's drift state of a target once, as a binary sensor
   * (device class problem) of the stream's device, from the drift's retained
   * state topic, with what holds it on as attributes.
   */
  announceDrift(stream: string, model: string, target: string, stateTopic: string): void {
    this.#binarySensor(`${model}\u0000${stream}\u0000drift:${target}`, stream, driftEntityId(model, stream, target), `${target} drift (${model})`, stateTopic, "{{ {'reasons': value_json.reasons, 'direction': value_json.direction, 'cusum': value_json.cusum, 'miss_rate': value_json.miss_rate, 'at': value_json.at} | tojson }}", 'problem');
  }

  #binarySensor(key: string, stream: string, id: string, name: string, stateTopic: string, attributes: string, deviceClass?: string): void {
    if (this.#announced.has(key)) return;
    if (this.#entities + 1 > (this.#opts.maxEntities ?? Infinity)) {
      if (!this.#capped) {
        this.#capped = true;
        this.#opts.log?.warn({ announced: this.#entities, max: this.#opts.maxEntities }, 'Home Assistant discovery: homeAssistant.maxEntities reached; later streams are not announced (their forecasts are still stored and published)');
      }
      return;
    }
    this.#announced.add(key);
    this.#entities++;
    const config = {
      name,
      unique_id: id,
      object_id: id,
      state_topic: stateTopic,
      value_template: '{{ value_json.state }}',
      payload_on: 'on',
      payload_off: 'off',
      json_attributes_topic: stateTopic,
      json_attributes_template: attributes,
      ...(deviceClass ? { device_class: deviceClass } : {}),
      availability_topic: this.#opts.availabilityTopic,
      payload_available: 'online',
      payload_not_available: 'offline',
      device: { identifiers: [deviceId(stream)], name: `tidecast ${stream}`, manufacturer: 'tidecast', model: 'stream forecast' },
    };
    this.#opts.publish(this.#alertConfigTopic(id), JSON.stringify(config), 1, true);
  }

  /**
   * Announce the entities of a stream × model once; later calls are free.
   * `intervals`: whether its forecasts carry prediction intervals (then a
   * numeric sensor has them as its `intervals` attribute).
   */
  announce(stream: string, model: string, card: ModelCard, stateTopic: string, intervals = false): void {
    const key = `${model}\u0000${stream}`;
    if (this.#announced.has(key)) return;
    const entities = card.horizons.length * card.targets.length;
    const max = this.#opts.maxEntities ?? Infinity;
    if (this.#entities + entities > max) {
      if (!this.#capped) {
        this.#capped = true;
        this.#opts.log?.warn({ announced: this.#entities, max }, 'Home Assistant discovery: homeAssistant.maxEntities reached; later streams are not announced (their forecasts are still stored and published)');
      }
      return;
    }
    this.#announced.add(key);
    this.#entities += entities;
    const device = {
      identifiers: [deviceId(stream)],
      name: `tidecast ${stream}`,
      manufacturer: 'tidecast',
      model: 'stream forecast',
    };
    card.horizons.forEach((horizon, hi) => {
      for (const t of card.targets) {
        const id = entityId(model, stream, t.name, horizon);
        const entry = `value_json.forecast[${hi}]`;
        // A classification target is an enum sensor whose state is the label, with the probabilities as attributes.
        const reading = t.labels
          ? {
              value_template: `{{ ${entry}.labels['${t.name}'].label }}`,
              json_attributes_template: `{{ {'issued_at': value_json.issued_at, 'target_time': ${entry}.target_time, 'probability': ${entry}.labels['${t.name}'].probability, 'probabilities': ${entry}.labels['${t.name}'].probabilities} | tojson }}`,
              device_class: 'enum',
              options: [...t.labels],
            }
          : {
              value_template: `{{ ${entry}.values['${t.name}'] | round(2) }}`,
              // With intervals: {"0.8": [lower, upper], "0.95": [...]}.
              json_attributes_template: `{{ {'issued_at': value_json.issued_at, 'target_time': ${entry}.target_time${intervals ? `, 'intervals': ${entry}.intervals['${t.name}']` : ''}} | tojson }}`,
              unit_of_measurement: t.unit,
              ...(t.unit === '°C' ? { device_class: 'temperature' } : {}),
              state_class: 'measurement',
            };
        const config = {
          name: `${t.name} ${horizon === 0 ? 'now' : `+${horizon} step${horizon > 1 ? 's' : ''}`} (${model})`,
          unique_id: id,
          object_id: id,
          state_topic: stateTopic,
          json_attributes_topic: stateTopic,
          ...reading,
          availability_topic: this.#opts.availabilityTopic,
          payload_available: 'online',
          payload_not_available: 'offline',
          device,
        };
        this.#opts.publish(this.#configTopic(id), JSON.stringify(config), 1, true);
        // The same entity under its old id (which could collide) goes away: an empty retained message clears it.
        this.#opts.publish(this.#configTopic(legacyId(model, stream, t.name, horizon)), '', 1, true);
      }
    });
  }
}
