import { HttpSource } from "./http.js";
import { LocalFileSource } from "./local.js";
import { S3Source } from "./s3.js";
import type { PositionalSource, SourceRef } from "./source.js";

/** Reopens a source from its plain-data ref (in a worker thread, say). */
export async function openSource(ref: SourceRef, display?: string): Promise<PositionalSource> {
  switch (ref.kind) {
    case "file":
      return LocalFileSource.open(ref.path);
    case "http":
      return HttpSource.fromRef(ref, display);
    case "s3":
      return S3Source.fromRef(ref);
  }
}
