import { appUrl, offload } from "../../../lib/offload.js";

// Hand the slow work to offload as an HTTP task and answer 202 at once: offload calls
// /api/reports/generate (retrying on failure) and posts the outcome, signed, to
// /api/reports/done.
export async function POST(request) {
  const { month } = await request.json();
  const base = appUrl(request);
  const task = await offload.createTask(`${base}/api/reports/generate`, {
    body: { month },
    callback_url: `${base}/api/reports/done`,
    idempotency_key: `report-${month}`,
    retries: 5,
    timeout: 120,
  });
  return Response.json({ run_id: task.id, duplicate: task.duplicate }, { status: 202 });
}
