import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { FaultQueue, sendWithFault } from "./faults.js";

/**
 * A loopback HTTP proxy in front of a local S3 server that injects faults into ranged
 * GetObject responses (see faults.ts); everything else passes through unchanged, Host
 * header included, so the SDK's signatures still verify.
 */
export interface S3FaultProxy {
  endpoint: string;
  faults: FaultQueue;
  /** Called with each request's method and path before it is forwarded. */
  onRequest: ((method: string, path: string) => void) | null;
  close(): Promise<void>;
}

export async function startS3FaultProxy(upstream: string): Promise<S3FaultProxy> {
  const target = new URL(upstream);
  const faults = new FaultQueue();
  const proxy: S3FaultProxy = { endpoint: "", faults, onRequest: null, close: async () => undefined };
  const server = createServer((req, res) => {
    proxy.onRequest?.(req.method!, req.url!);
    const fault = req.method === "GET" && req.headers.range !== undefined ? faults.take() : undefined;
    const up = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (upRes) => {
        if (fault === undefined) {
          res.writeHead(upRes.statusCode!, upRes.headers);
          upRes.pipe(res);
          return;
        }
        const chunks: Buffer[] = [];
        upRes.on("data", (c: Buffer) => chunks.push(c));
        upRes.on("end", () => {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(upRes.headers))
            if (typeof v === "string" && k !== "content-length" && k !== "connection") headers[k] = v;
          sendWithFault(res, upRes.statusCode!, headers, Buffer.concat(chunks), fault);
        });
      },
    );
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  proxy.endpoint = `http://127.0.0.1:${port}`;
  proxy.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return proxy;
}
