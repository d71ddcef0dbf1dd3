import { createRequire } from "node:module";

/**
 * A loopback S3 server (s3rver) for `bench:merge -- --source s3`, run as its own process
 * so that the benchmark's synchronous timing calls never block it. Prints its endpoint
 * as one JSON line, then serves until killed. Usage: node local-s3.js DIR BUCKET
 */
const [directory, bucket] = process.argv.slice(2);
interface S3rverInstance {
  run(): Promise<{ port: number }>;
}
const S3rver = createRequire(import.meta.url)("s3rver") as new (
  opts: Record<string, unknown>,
) => S3rverInstance;
const server = new S3rver({
  address: "127.0.0.1",
  port: 0,
  silent: true,
  directory,
  configureBuckets: [{ name: bucket }],
});
const { port } = await server.run();
process.stdout.write(JSON.stringify({ endpoint: `http://127.0.0.1:${port}` }) + "\n");
