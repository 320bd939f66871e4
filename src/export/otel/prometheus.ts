/**
 * The Prometheus scrape endpoint (`--prometheus PORT`): the OpenTelemetry Prometheus exporter as a metric
 * reader, served by our own node:http server so that we choose the bind address (127.0.0.1 by default: a
 * tracing tool should not publish a host's VM activity to the network unless asked), can bind port 0 and
 * report the port the kernel picked, and turn a bind failure into one clear line.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import type { MetricProducer } from '@opentelemetry/sdk-metrics';
import { oneLineError } from './util.js';

export const PROMETHEUS_PATH = '/metrics';

export class PrometheusEndpoint {
  readonly reader: PrometheusExporter;
  private server?: Server;
  /** The URL scrapers should use, once listening. */
  url?: string;

  constructor(
    readonly host: string,
    readonly port: number,
    metricProducers: MetricProducer[] = [],
  ) {
    this.reader = new PrometheusExporter({ preventServerStart: true, metricProducers });
  }

  listen(): Promise<string> {
    if (this.url) return Promise.resolve(this.url);
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method === 'GET' && path === PROMETHEUS_PATH) {
        this.reader.getMetricsRequestHandler(req, res);
      } else {
        res.statusCode = 404;
        res.end(`kvm-trace serves Prometheus metrics at ${PROMETHEUS_PATH}\n`);
      }
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', (err) => {
        this.server = undefined;
        reject(new Error(`cannot serve Prometheus metrics on ${this.host}:${this.port}: ${oneLineError(err)}`));
      });
      server.listen(this.port, this.host, () => {
        // A scrape endpoint must not keep a finished capture alive.
        server.unref();
        const addr = server.address() as AddressInfo;
        const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
        this.url = `http://${host}:${addr.port}${PROMETHEUS_PATH}`;
        resolve(this.url);
      });
    });
  }

  /** The bound port (after listen()). */
  get boundPort(): number | undefined {
    const addr = this.server?.address();
    return addr && typeof addr === 'object' ? addr.port : undefined;
  }

  close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return Promise.resolve();
    return new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }
}
