/**
 * The Hub's configuration from the environment, as huggingface_hub reads it: HF_TOKEN
 * (or the older HUGGING_FACE_HUB_TOKEN) and HF_ENDPOINT. The token is only ever put in
 * an Authorization header to the Hub itself: never printed, logged or recorded.
 */
export function hubEndpoint(): string {
  return (process.env["HF_ENDPOINT"] ?? "https://huggingface.co").replace(/\/+$/, "");
}

export function hubToken(): string | undefined {
  const t = process.env["HF_TOKEN"] ?? process.env["HUGGING_FACE_HUB_TOKEN"];
  return t === undefined || t === "" ? undefined : t;
}

export function hubAuthHeaders(): Record<string, string> {
  const token = hubToken();
  return token === undefined ? {} : { Authorization: `Bearer ${token}` };
}
