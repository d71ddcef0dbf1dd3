import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { withRetries } from "../sources/retry.js";
import { classifyS3Error, listS3 } from "../sources/s3.js";
import { s3Client, s3Uri } from "../sources/s3-client.js";
import type { S3Staging } from "../sources/s3-output.js";

/**
 * The small JSON objects the parts of a merge into S3 leave in the output's staging
 * prefix (`.<name>.pma-staging-parts/`): the plan and one marker per finished part,
 * beside the staged uploads' manifests. Publishing removes the whole prefix.
 */
export const S3_PARTS_STAGING_ID = "parts";

export async function getStagedText(staging: S3Staging, name: string): Promise<string | null> {
  const key = `${staging.stagingPrefix}${name}`;
  const uri = s3Uri({ bucket: staging.out.bucket, key });
  return withRetries(`${uri}: GetObject`, async () => {
    try {
      const res = await s3Client().send(new GetObjectCommand({ Bucket: staging.out.bucket, Key: key }));
      return await res.Body!.transformToString();
    } catch (e) {
      const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 404 || (e as { name?: string }).name === "NoSuchKey") return null;
      throw classifyS3Error(e, uri, "GetObject");
    }
  });
}

export async function putStagedText(staging: S3Staging, name: string, text: string): Promise<void> {
  const key = `${staging.stagingPrefix}${name}`;
  const uri = s3Uri({ bucket: staging.out.bucket, key });
  await withRetries(`${uri}: PutObject`, async () => {
    try {
      await s3Client().send(
        new PutObjectCommand({
          Bucket: staging.out.bucket,
          Key: key,
          Body: text,
          ContentLength: Buffer.byteLength(text),
        }),
      );
    } catch (e) {
      throw classifyS3Error(e, uri, "PutObject");
    }
  });
}

/** Names of the objects directly in the staging prefix. */
export async function listStaged(staging: S3Staging): Promise<string[]> {
  const objects = await listS3({ bucket: staging.out.bucket, key: staging.stagingPrefix });
  return objects.map((o) => o.key.slice(staging.stagingPrefix.length)).filter((n) => !n.includes("/"));
}
