import { createServer, type AddressInfo, type Server } from 'node:net';
import { Aedes } from 'aedes';

/** An in-process MQTT broker (aedes) on a free loopback port, for the demo and machines without Mosquitto. */
export class EmbeddedBroker {
  #server: Server | null = null;
  #broker: Aedes | null = null;
  port = 0;

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async start(port = 0): Promise<void> {
    const broker = await Aedes.createBroker();
    const server = createServer(broker.handle);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.#broker = broker;
    this.#server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    const broker = this.#broker;
    this.#server = null;
    this.#broker = null;
    if (broker) await new Promise<void>((r) => broker.close(() => r()));
    if (server) {
      await new Promise<void>((r) => server.close(() => r()));
    }
  }
}
