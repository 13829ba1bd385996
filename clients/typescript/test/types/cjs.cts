// Type-checked by test/types.test.mjs: the package's CommonJS typings.
import offload = require("@offload/client");

export async function send(): Promise<string[]> {
  const ids = await offload.sendEvent({ name: "a/b", data: { n: 1 } });
  const run = await offload.getRun(ids[0] ?? "");
  return run.status === "completed" ? ids : [];
}
