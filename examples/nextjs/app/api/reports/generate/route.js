import { verifyWebhook, WebhookVerificationError } from "@offload/client";

// The task's target: offload calls it (signed) and retries it until it answers 2xx.
export async function POST(request) {
  let call;
  try {
    call = await verifyWebhook(request);
  } catch (error) {
    if (error instanceof WebhookVerificationError) return new Response(null, { status: 401 });
    throw error;
  }
  const { month } = call.payload;
  return Response.json({ month, rows: 3, total: 4200 });
}
