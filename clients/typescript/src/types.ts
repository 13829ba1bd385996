/** Field names follow offload's HTTP API (snake_case), so the API reference applies as is. */

/** A duration: a time string (`"500ms"`, `"30s"`, `"1m30s"`, `"2h"`, `"1d"`) or seconds. */
export type Period = string | number;

/** An HTTP task's settings besides its target URL (see `POST /v1/tasks`). */
export interface TaskOptions {
  method?: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  headers?: Record<string, string>;
  /** A JSON value (sent as application/json) or a string (text/plain). */
  body?: unknown;
  /** Receives the outcome, signed per Standard Webhooks (see `verifyWebhook`). */
  callback_url?: string;
  /** Receives the outcome instead of `callback_url` when the task failed. */
  failure_callback_url?: string;
  /** Retries after the first attempt (0–50, default 3). */
  retries?: number;
  /** Seconds allowed for one attempt (default 30, at most 900). */
  timeout?: number;
  /** Seconds to wait before the first attempt. */
  delay?: number;
  /** Earliest first attempt, RFC 3339 with an offset (or a Date). */
  not_before?: string | Date;
  /** A repeat within 24 h answers the first run (`duplicate: true`). */
  idempotency_key?: string;
  /** A name for grouping and flow control (default `"default"`). */
  queue?: string;
  /** A label for the task, shown in the dashboard and filterable (`listRuns({ name })`). */
  name?: string;
  /** Your id for this work (an order id, a request id): stored on the run, filterable. */
  correlation_id?: string;
  concurrency?: number;
  concurrency_key?: string;
  concurrency_limit?: number;
  throttle?: { limit: number; period: Period; burst?: number; key?: string };
  rate_limit?: { limit: number; period: Period; key?: string };
  priority?: number;
  debounce?: { period: Period; key?: string; timeout?: Period };
  singleton?: { key?: string; mode?: "skip" | "cancel" };
  start_timeout?: number;
  finish_timeout?: number;
  /** Any field a newer engine accepts. */
  [field: string]: unknown;
}

/** One task of a batch: its URL and settings. */
export interface TaskSpec extends TaskOptions {
  url: string;
}

/** The answer to a task submission. */
export interface TaskAccepted {
  id: string;
  status: RunStatus;
  created_at: string;
  /** True when an idempotency key matched an earlier run. */
  duplicate: boolean;
  outcome: "created" | "duplicate" | "debounced" | "rate_limited" | "skipped";
}

export type RunStatus =
  | "queued"
  | "running"
  | "sleeping"
  | "waiting"
  | "completed"
  | "failed"
  | "cancelled";

/** An error as the SDK or the HTTP-task attempt produced it, kept whole. */
export interface RunError {
  name: string;
  message: string;
  stack?: string | null;
  code?: string;
  [field: string]: unknown;
}

export interface Step {
  id: string;
  name: string;
  kind: string;
  status: string;
  attempts: number;
  output?: unknown;
  error?: RunError | null;
  started_at: string | null;
  ended_at: string | null;
  [field: string]: unknown;
}

/** A run: one execution of one function (an HTTP task's function is `http`). */
export interface Run {
  id: string;
  app_id: string | null;
  function_id: string;
  status: RunStatus;
  attempt: number;
  event_ids: string[];
  queue: string | null;
  input?: unknown;
  /** For an HTTP task: `{ status, headers, body }` of the target's last answer. */
  output: unknown;
  error: RunError | null;
  correlation_id?: string | null;
  replay_of?: string | null;
  idempotency_key?: string | null;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  steps?: Step[];
  [field: string]: unknown;
}

/** An event for `sendEvent`. */
export interface EventPayload {
  name: string;
  data?: unknown;
  /** A repeated id is deduplicated. */
  id?: string;
  ts?: number;
  user?: unknown;
}

/** What a task's callback receives (the payload of a verified callback). */
export interface CallbackPayload {
  run_id: string;
  status: RunStatus;
  attempts: number;
  /** The target's last answer: `{ status, headers, body }`. */
  response: { status: number; headers?: Record<string, string>; body?: unknown } | null;
  error: RunError | null;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
}
