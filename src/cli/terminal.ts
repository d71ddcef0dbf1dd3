/** Whether stderr is an interactive terminal: progress bars only draw there. */
export function isInteractive(): boolean {
  return Boolean(process.stderr.isTTY) && process.env.CI === undefined;
}
