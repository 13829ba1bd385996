import { verifyWebhook, WebhookVerificationError } from "@offload/client";
import { reports } from "../../../../lib/offload.js";

// The task's callback: offload posts the outcome here, signed per Standard Webhooks.
// `id` is the same for every retry of one delivery, so a repeat is recognised.
export async function POST(request) {
  let callback;
  try {
    callback = await verifyWebhook(request);
  } catch (error) {
    if (error instanceof WebhookVerificationError) {
      return Response.json({ error: error.message }, { status: 401 });
    }
    throw error;
  }
  const { run_id, status, response } = callback.payload;
  reports.set(run_id, { delivery: callback.id, status, report: response?.body ?? null });
  return new Response(null, { status: 204 });
}

export async function GET(request) {
  const runId = new URL(request.url).searchParams.get("run_id");
  const report = reports.get(runId);
  return report ? Response.json(report) : Response.json({ error: "not yet" }, { status: 404 });
}
