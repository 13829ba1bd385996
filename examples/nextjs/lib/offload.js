import { OffloadClient } from "@offload/client";

// The engine's URL and API key come from the environment (OFFLOAD_URL, OFFLOAD_API_KEY);
// offload's signed calls are verified with OFFLOAD_WEBHOOK_SECRET.
export const offload = new OffloadClient({ baseUrl: process.env.OFFLOAD_URL });

// Where offload can reach this app (its calls come from the engine, not the browser).
export function appUrl(request) {
  return process.env.APP_URL ?? new URL(request.url).origin;
}

// Verified callbacks by run id. A real app writes them to its database; the example
// keeps them in memory so GET /api/reports/done?run_id=… can show what arrived.
export const reports = (globalThis.__offloadReports ??= new Map());
