import type { ModelCard } from '../inference/card.js';

export interface DiscoveryOptions {
  prefix: string;
  availabilityTopic: string;
  publish(topic: string, payload: string, qos: 0 | 1 | 2, retain: boolean): void;
}

/** Home Assistant object ids: letters, digits, _ and - only. */
const objectId = (s: string): string => s.replace(/[^A-Za-z0-9_-]+/g, '_').replace(/^_+|_+$/g, '');

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

  constructor(options: DiscoveryOptions) {
    this.#opts = options;
  }

  /** Announce a model's entities again on its next forecasts (a hot reload may have changed its card). */
  forget(model: string): void {
    for (const key of this.#announced) if (key.startsWith(`${model}\u0000`)) this.#announced.delete(key);
  }

  /** Announce the entities of a stream × model once; later calls are free. */
  announce(stream: string, model: string, card: ModelCard, stateTopic: string): void {
    const key = `${model}\u0000${stream}`;
    if (this.#announced.has(key)) return;
    this.#announced.add(key);
    const device = {
      identifiers: [`tidecast_${objectId(stream)}`],
      name: `tidecast ${stream}`,
      manufacturer: 'tidecast',
      model: 'stream forecast',
    };
    card.horizons.forEach((horizon, hi) => {
      for (const t of card.targets) {
        const id = objectId(`tidecast_${model}_${stream}_${t.name}_h${horizon}`);
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
              json_attributes_template: `{{ {'issued_at': value_json.issued_at, 'target_time': ${entry}.target_time} | tojson }}`,
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
        this.#opts.publish(`${this.#opts.prefix}/sensor/${id}/config`, JSON.stringify(config), 1, true);
      }
    });
  }
}
