import { readFileSync } from "node:fs";

/** pma's version, read from package.json so there is one source of truth. */
export const PMA_VERSION: string = (() => {
  const url = new URL("../../../package.json", import.meta.url);
  return (JSON.parse(readFileSync(url, "utf8")) as { version: string }).version;
})();
