/**
 * pma as a library: the same functions the CLI commands wrap.
 *   import { merge } from "pma";
 */
export { PmaError, isPmaError, type PmaErrorCode } from "./common/errors.js";
export { parseBytes, parseTokens, formatTokens } from "./common/units.js";
export { PMA_VERSION } from "./common/version.js";
export { DTYPES, isFloatDType, type DType, type FloatDType } from "./tensor/dtype.js";
export { decodeFloats, encodeFloats } from "./tensor/codec.js";
export { SafetensorsFile, parseSafetensorsHeader, type TensorEntry } from "./formats/safetensors.js";
export {
  openCheckpointTensors,
  openRemoteCheckpointTensors,
  type CheckpointTensors,
} from "./formats/checkpoint-files.js";
export type { PositionalSource, SourceRef } from "./sources/source.js";
export { LocalFileSource } from "./sources/local.js";
export { HttpSource } from "./sources/http.js";
export { S3Source } from "./sources/s3.js";
export { openSource } from "./sources/open.js";
export { resolveRemote, isRemoteUri, type RemoteLocation } from "./sources/location.js";
export { S3Staging } from "./sources/s3-output.js";
export {
  SafetensorsWriter,
  planShards,
  writeSafetensors,
  type TensorSpec,
} from "./formats/safetensors-writer.js";
export { inspectCheckpoint, type CheckpointSummary } from "./formats/inspect.js";
export { merge, type MergeOptions, type MergeRecord } from "./merge/merger.js";
export { finalizeMerge, type FinalizeOptions } from "./merge/finalize.js";
export type { PartSpec } from "./merge/part-output.js";
export { smaCoefficients, wmaCoefficients, emaCoefficients, customCoefficients } from "./merge/weights.js";
export { coefficientsFor, MERGE_METHODS, type MethodSpec, type MergeMethod } from "./merge/methods.js";
export { orderByProgress, readProgress } from "./merge/order.js";
export { writeSyntheticRun } from "./trajectory/synthetic.js";
export { discoverRun, type RunCheckpoint, type RunScan } from "./trajectory/run.js";
export { planMerge, type MergePlan } from "./trajectory/plan.js";
export { recommendInterval } from "./trajectory/interval.js";
export { autoInterval, isMoeCheckpoint } from "./trajectory/auto-interval.js";
export { readTrainingLog, type TrainingLog } from "./trajectory/logs.js";
export { detectSpikes } from "./trajectory/spikes.js";
export { pmaInit, type InitRecord, type PmaInitOptions } from "./trajectory/init.js";
export { watchRun, type WatchOptions } from "./trajectory/watch.js";
export { train } from "./train/loop.js";
export { evaluateCheckpoint } from "./eval/evaluate.js";
export { createModel } from "./nn/model.js";
export { getBackend, describeBackend } from "./nn/kernels/index.js";
export { GgufFile } from "./formats/gguf.js";
export { Suite, scoreCheckpoint, type SuiteScores, type SuiteOptions } from "./eval/suite.js";
export { buildTaskItems, type TaskItems, type TaskItemOptions } from "./eval/task-items.js";
export { taskItemsFor, loadTaskItems, saveTaskItems } from "./eval/items-io.js";
export {
  writeReport,
  lineChart,
  barChart,
  heatmap,
  contourPlot,
  meanSd,
  type LabReport,
  type Claim,
  type ReportFigure,
  type Verdict,
} from "./report/index.js";
export { convertToGguf, type ConvertToGgufOptions, type ConvertToGgufResult } from "./convert/to-gguf.js";
export {
  scoreTokens,
  evaluateWithLlamaCpp,
  type ScoredTokens,
  type EvalEngine,
} from "./eval/score-tokens.js";
export { compareLogprobs, summarizeLogprobs, type LogprobAgreement } from "./eval/token-logprobs.js";
