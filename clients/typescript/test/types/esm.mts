// Type-checked by test/types.test.mjs: the package's ESM typings as an app sees them.
import {
  OffloadClient,
  OffloadError,
  verifyWebhook,
  type CallbackPayload,
  type Run,
  type TaskAccepted,
} from "@offload/client";

const client = new OffloadClient({ baseUrl: "http://127.0.0.1:8288", retries: 0 });

export async function handler(request: Request): Promise<Response> {
  const accepted: TaskAccepted = await client.createTask("https://example.com", {
    body: { n: 1 },
    throttle: { limit: 1, period: "1s" },
  });
  const run: Run = await client.waitRun(accepted.id, { timeout: 5 });
  const { payload } = await verifyWebhook<CallbackPayload>(request, { secret: ["whsec_a", "whsec_b"] });
  try {
    await client.cancelRun(run.id);
  } catch (error) {
    if (error instanceof OffloadError) return Response.json(error.errors, { status: error.status });
  }
  return Response.json({ status: payload.status, code: payload.response?.status });
}

// @ts-expect-error: retries is a number
client.createTask("https://example.com", { retries: "3" });
