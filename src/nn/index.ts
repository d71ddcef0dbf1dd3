/** The training engine's public surface: config, parameters, model, gradients, optimizer, schedules. */
export type { ModelConfig, TorchDtype } from "./config.js";
export { DEFAULT_DENSE_CONFIG, DEFAULT_MOE_CONFIG, fromHfConfig, isMoe, resolveConfig, sameConfig, toHfConfig, validateConfig } from "./config.js";
export type { BlockTensors, ModelTensors, NamedTensor, ParamInfo } from "./params.js";
export { paramLayout, ParamSet } from "./params.js";
export type { CreateModelOptions, LossParts, ModelShape } from "./model.js";
export { createModel, Model } from "./model.js";
export { activationBytes } from "./activation-bytes.js";
export { IGNORE_INDEX } from "./layers/cross-entropy.js";
export type { Batch, LossAndGradient } from "./grad.js";
export { lossAndGradient } from "./grad.js";
export type { AdamWOptions, AdamWState } from "./adamw.js";
export { AdamW, DEFAULT_ADAMW } from "./adamw.js";
export type { ConstantSchedule, CosineSchedule, ScheduleSpec, SchedulePhase, WsdSchedule } from "./schedule.js";
export { lrAt, parseSchedule, phaseAt, scheduleEnd } from "./schedule.js";
export type { RngState } from "./rng.js";
export { hashString, Rng } from "./rng.js";
