import { S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import { PmaError } from "../common/errors.js";

/**
 * S3 configuration comes from the AWS SDK's own chain (environment, shared config and
 * credentials files, SSO, instance roles): pma adds nothing of its own, so whatever
 * works for the aws CLI works here, and no secret passes through pma's code.
 *
 * Two adjustments for S3-compatible stores (MinIO, Ceph, s3rver), recognised by a custom
 * endpoint in AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL: path-style addressing (they rarely
 * have wildcard DNS for bucket subdomains), and checksums only where required, since
 * stores without the newer checksum protocol store a streamed body with its chunk
 * framing. Retries are pma's own (see retry.ts), so the SDK makes one attempt per call.
 */
export function customS3Endpoint(): string | undefined {
  const e = process.env["AWS_ENDPOINT_URL_S3"] ?? process.env["AWS_ENDPOINT_URL"];
  return e === undefined || e === "" ? undefined : e;
}

const clients = new Map<string, S3Client>();

export function s3Client(): S3Client {
  const endpoint = customS3Endpoint();
  const key = endpoint ?? "";
  let client = clients.get(key);
  if (client === undefined) {
    // The SDK warns on every Node 20 start that its future releases will need Node 22;
    // pma supports Node 20 with the SDK version it pins, so the warning only adds noise
    // to every command's output. An explicit setting by the user still wins.
    process.env["AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED"] ??= "true";
    const region = process.env["AWS_REGION"] ?? process.env["AWS_DEFAULT_REGION"];
    const config: S3ClientConfig = { maxAttempts: 1 };
    if (endpoint !== undefined) {
      Object.assign(config, {
        endpoint,
        forcePathStyle: true,
        requestChecksumCalculation: "WHEN_REQUIRED",
        responseChecksumValidation: "WHEN_REQUIRED",
      });
      // A self-hosted store usually ignores the region, but the SDK must sign with one.
      config.region = region ?? "us-east-1";
    } else if (region !== undefined) {
      config.region = region;
    }
    client = new S3Client(config);
    clients.set(key, client);
  }
  return client;
}

export interface S3Location {
  bucket: string;
  /** The key or key prefix, without a leading slash. */
  key: string;
}

/** `s3://bucket/key/or/prefix` -> its parts. */
export function parseS3Uri(uri: string): S3Location {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(uri);
  if (m === null || m[1] === "")
    throw new PmaError("USAGE", `${uri}: not an S3 URI; write s3://bucket/prefix`);
  return { bucket: m[1]!, key: m[2]! };
}

export function s3Uri(loc: S3Location): string {
  return `s3://${loc.bucket}/${loc.key}`;
}

/** The SDK's error name and HTTP status, for deciding what to do about a failure. */
export function s3ErrorInfo(e: unknown): {
  name: string;
  status: number | undefined;
  retryAfter: string | undefined;
} {
  const err = e as {
    name?: string;
    $metadata?: { httpStatusCode?: number };
    $response?: { headers?: Record<string, string> };
  };
  return {
    name: err?.name ?? "",
    status: err?.$metadata?.httpStatusCode,
    retryAfter: err?.$response?.headers?.["retry-after"],
  };
}
