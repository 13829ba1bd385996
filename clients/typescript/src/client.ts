import { OffloadConnectionError, OffloadError, type Problem } from "./errors.js";
import type {
  EventPayload,
  Run,
  RunStatus,
  TaskAccepted,
  TaskOptions,
  TaskSpec,
} from "./types.js";

/** The engine `offload dev` starts. */
export const DEFAULT_URL = "http://127.0.0.1:8288";

export interface ClientOptions {
  /** The engine's URL; defaults to `OFFLOAD_URL`, then `http://127.0.0.1:8288`. */
  baseUrl?: string;
  /** An API key (`Authorization: Bearer …`); defaults to `OFFLOAD_API_KEY`. */
  apiKey?: string;
  /** Milliseconds allowed for one request (default 30 000). */
  timeoutMs?: number;
  /**
   * Retries after a connection error (nothing answered) for requests that are safe to
   * repeat: reads, cancels, and submissions that carry an idempotency key or event id
   * (default 2).
   */
  retries?: number;
  /** A `fetch` to use instead of the global one. */
  fetch?: typeof fetch;
}

export interface ListRunsFilter {
  status?: RunStatus | RunStatus[];
  function_id?: string;
  queue?: string;
  /** RFC 3339 with an offset. */
  after?: string;
  before?: string;
  /** HTTP tasks with this `name`. */
  name?: string;
  correlation_id?: string;
  /** Search by run id or error text. */
  q?: string;
  cursor?: string;
  limit?: number;
  [filter: string]: string | number | string[] | undefined;
}

interface RequestOptions {
  query?: Record<string, string | number | string[] | undefined>;
  body?: unknown;
  timeoutMs?: number;
  /** True when repeating the request cannot do anything twice. */
  idempotent?: boolean;
}

/**
 * A client for offload's `/v1` API. Every method returns the decoded JSON answer, or
 * throws {@link OffloadError} (with the RFC 9457 problem body) for a 4xx/5xx and
 * {@link OffloadConnectionError} when the engine could not be reached.
 *
 * ```ts
 * const offload = new OffloadClient({ baseUrl: "http://127.0.0.1:8288" });
 * const task = await offload.createTask("https://example.com/hooks/resize", {
 *   body: { image: 42 }, callback_url: "https://example.com/hooks/resized",
 * });
 * const run = await offload.waitRun(task.id, { timeout: 30 });
 * ```
 */
export class OffloadClient {
  readonly baseUrl: string;
  private readonly apiKey: string | undefined;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly fetchImpl: typeof fetch;

  constructor(options: ClientOptions = {}) {
    const env = processEnv();
    this.baseUrl = (options.baseUrl ?? env.OFFLOAD_URL ?? DEFAULT_URL).replace(/\/+$/, "");
    this.apiKey = options.apiKey ?? env.OFFLOAD_API_KEY;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.retries = options.retries ?? 2;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** Queue an HTTP task: `202` with the run id once it is stored, before the call. */
  createTask(url: string, options: TaskOptions = {}): Promise<TaskAccepted> {
    return this.request("POST", "/v1/tasks", {
      body: taskBody({ ...options, url }),
      idempotent: options.idempotency_key !== undefined,
    });
  }

  /** Queue up to 1 000 tasks in one request; all are accepted or none is. */
  async createTasks(tasks: TaskSpec[]): Promise<TaskAccepted[]> {
    const answer = await this.request<{ data: TaskAccepted[] }>("POST", "/v1/tasks/batch", {
      body: { tasks: tasks.map(taskBody) },
      idempotent: tasks.every((t) => t.idempotency_key !== undefined),
    });
    return answer.data;
  }

  /** Send one event or many; each starts every function it triggers. Answers the ids. */
  async sendEvent(event: EventPayload | EventPayload[]): Promise<string[]> {
    const events = Array.isArray(event) ? event : [event];
    const answer = await this.request<{ ids: string[] }>("POST", "/v1/events", {
      body: events.map((e) => ({ ...e, data: e.data ?? {} })),
      idempotent: events.every((e) => e.id !== undefined),
    });
    return answer.ids;
  }

  /** A run with its steps. */
  getRun(runId: string): Promise<Run> {
    return this.request("GET", `/v1/runs/${encodeURIComponent(runId)}`, { idempotent: true });
  }

  /** A page of runs, newest first: `{ data, next_cursor }`. */
  listRuns(filter: ListRunsFilter = {}): Promise<{ data: Run[]; next_cursor: string | null }> {
    return this.request("GET", "/v1/runs", { query: filter, idempotent: true });
  }

  /**
   * The run once it has ended, or as it is after `timeout` seconds (default 30, at most
   * 300): check `status`.
   */
  waitRun(runId: string, options: { timeout?: number } = {}): Promise<Run> {
    const timeout = options.timeout ?? 30;
    return this.request("GET", `/v1/runs/${encodeURIComponent(runId)}/wait`, {
      query: { timeout },
      timeoutMs: timeout * 1000 + this.timeoutMs,
      idempotent: true,
    });
  }

  /** Cancel a run that has not ended (a `409` OffloadError when it has). */
  cancelRun(runId: string): Promise<Run> {
    return this.request("POST", `/v1/runs/${encodeURIComponent(runId)}/cancel`, {
      idempotent: true,
    });
  }

  /** Start a new run with the same input, linked by `replay_of`. */
  replayRun(runId: string): Promise<Run> {
    return this.request("POST", `/v1/runs/${encodeURIComponent(runId)}/replay`);
  }

  private async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const url = new URL(this.baseUrl + path);
    for (const [name, value] of Object.entries(options.query ?? {})) {
      if (value === undefined) continue;
      for (const one of Array.isArray(value) ? value : [value]) {
        url.searchParams.append(name, String(one));
      }
    }
    const headers: Record<string, string> = { accept: "application/json" };
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    const attempts = options.idempotent ? this.retries + 1 : 1;
    for (let attempt = 1; ; attempt++) {
      let response: Response;
      try {
        response = await this.fetchImpl(url, {
          method,
          headers,
          body,
          signal: AbortSignal.timeout(options.timeoutMs ?? this.timeoutMs),
        });
      } catch (error) {
        if (attempt < attempts) {
          await sleep(100 * 2 ** attempt);
          continue;
        }
        throw new OffloadConnectionError(
          `cannot reach offload at ${this.baseUrl}: ${describe(error)}`,
          { cause: error },
        );
      }
      return decode<T>(response);
    }
  }
}

async function decode<T>(response: Response): Promise<T> {
  const text = await response.text();
  let value: unknown = text;
  try {
    value = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: keep the text
  }
  if (response.status >= 400) {
    const problem: Problem =
      value && typeof value === "object" ? (value as Problem) : { status: response.status, title: text };
    const retryAfter = Number(response.headers.get("retry-after") ?? Number.NaN);
    throw new OffloadError(response.status, problem, Number.isFinite(retryAfter) ? retryAfter : undefined);
  }
  return value as T;
}

function taskBody(spec: TaskSpec): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(spec)) {
    if (value === undefined) continue;
    out[key] = value instanceof Date ? value.toISOString() : value;
  }
  return out;
}

function processEnv(): Record<string, string | undefined> {
  return (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env ?? {};
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    return cause instanceof Error ? `${error.message} (${cause.message})` : error.message;
  }
  return String(error);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
