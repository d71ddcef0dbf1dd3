import type { FuzzTarget } from "../target.js";
import { dcpMetadata } from "./dcp.js";
import { adapterTarget } from "./adapter.js";
import { ggufTarget } from "./gguf.js";
import { csvTarget, jsonlTarget, trainerStateTarget } from "./logs.js";
import { safetensorsFile, safetensorsHeader, safetensorsIndex } from "./safetensors.js";
import { stateFilesTarget } from "./state.js";
import { tensorboardEvents, tensorboardFile } from "./tensorboard.js";

export const TARGETS: readonly FuzzTarget[] = [
  safetensorsFile,
  safetensorsHeader,
  safetensorsIndex,
  ggufTarget,
  tensorboardFile,
  tensorboardEvents,
  trainerStateTarget,
  jsonlTarget,
  csvTarget,
  stateFilesTarget,
  dcpMetadata,
  adapterTarget,
];

export function targetByName(name: string): FuzzTarget | undefined {
  return TARGETS.find((t) => t.name === name);
}
