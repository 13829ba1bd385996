/**
 * `@offload/client`: hand work to offload from TypeScript and receive its signed calls.
 *
 * The functions below use a client configured from the environment (`OFFLOAD_URL`,
 * `OFFLOAD_API_KEY`); create an {@link OffloadClient} for anything else.
 */
import { OffloadClient, type ListRunsFilter } from "./client.js";
import type { EventPayload, Run, TaskAccepted, TaskOptions, TaskSpec } from "./types.js";

export { DEFAULT_URL, OffloadClient } from "./client.js";
export type { ClientOptions, ListRunsFilter } from "./client.js";
export { OffloadConnectionError, OffloadError, WebhookVerificationError } from "./errors.js";
export type { Problem, ProblemFieldError } from "./errors.js";
export type * from "./types.js";
export { DEFAULT_TOLERANCE_SECONDS, signWebhook, verifyWebhook } from "./webhooks.js";
export type { HeaderSource, RawWebhook, VerifiedWebhook, VerifyOptions } from "./webhooks.js";

let shared: OffloadClient | undefined;

function client(): OffloadClient {
  shared ??= new OffloadClient();
  return shared;
}

/** {@link OffloadClient.createTask} on the environment's engine. */
export function createTask(url: string, options?: TaskOptions): Promise<TaskAccepted> {
  return client().createTask(url, options);
}

/** {@link OffloadClient.createTasks} on the environment's engine. */
export function createTasks(tasks: TaskSpec[]): Promise<TaskAccepted[]> {
  return client().createTasks(tasks);
}

/** {@link OffloadClient.sendEvent} on the environment's engine. */
export function sendEvent(event: EventPayload | EventPayload[]): Promise<string[]> {
  return client().sendEvent(event);
}

/** {@link OffloadClient.getRun} on the environment's engine. */
export function getRun(runId: string): Promise<Run> {
  return client().getRun(runId);
}

/** {@link OffloadClient.listRuns} on the environment's engine. */
export function listRuns(filter?: ListRunsFilter): Promise<{ data: Run[]; next_cursor: string | null }> {
  return client().listRuns(filter);
}

/** {@link OffloadClient.waitRun} on the environment's engine. */
export function waitRun(runId: string, options?: { timeout?: number }): Promise<Run> {
  return client().waitRun(runId, options);
}

/** {@link OffloadClient.cancelRun} on the environment's engine. */
export function cancelRun(runId: string): Promise<Run> {
  return client().cancelRun(runId);
}

/** {@link OffloadClient.replayRun} on the environment's engine. */
export function replayRun(runId: string): Promise<Run> {
  return client().replayRun(runId);
}
