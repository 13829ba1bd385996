/** One thing wrong with a request, as offload names it in a problem body. */
export interface ProblemFieldError {
  /** Where: `"body.url"`, `"body.tasks[3].retries"`, `"query.limit"`. */
  field: string;
  /** Machine-readable reason, e.g. `missing`, `url_scheme`. */
  code: string;
  message: string;
}

/** An RFC 9457 problem body, as offload answers every 4xx and 5xx. */
export interface Problem {
  type?: string;
  status?: number;
  /** Machine-readable: `invalid_request`, `not_found`, `conflict`, `unauthorized`, … */
  code?: string;
  title?: string;
  detail?: string;
  errors?: ProblemFieldError[];
  [extra: string]: unknown;
}

/** An error answer from offload (status ≥ 400), carrying the problem body. */
export class OffloadError extends Error {
  override readonly name = "OffloadError";
  /** The HTTP status. */
  readonly status: number;
  /** The decoded problem body (or `{ title: <text> }` when the answer was not JSON). */
  readonly problem: Problem;
  /** `problem.code`, when there is one. */
  readonly code: string | undefined;
  /** Seconds from a `Retry-After` header (e.g. 503 while the database is unavailable). */
  readonly retryAfter: number | undefined;

  constructor(status: number, problem: Problem, retryAfter?: number) {
    super(describe(status, problem));
    this.status = status;
    this.problem = problem;
    this.code = typeof problem.code === "string" ? problem.code : undefined;
    this.retryAfter = retryAfter;
  }

  /** The per-field errors of a 4xx (empty when the problem names none). */
  get errors(): ProblemFieldError[] {
    return Array.isArray(this.problem.errors) ? this.problem.errors : [];
  }
}

/** offload could not be reached (connection refused, DNS, timeout): nothing was answered. */
export class OffloadConnectionError extends Error {
  override readonly name = "OffloadConnectionError";

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A webhook did not verify: missing or malformed headers, stale timestamp, bad signature. */
export class WebhookVerificationError extends Error {
  override readonly name = "WebhookVerificationError";
}

function describe(status: number, problem: Problem): string {
  const head = `offload answered ${status}${problem.title ? `: ${problem.title}` : ""}`;
  const fields = Array.isArray(problem.errors)
    ? problem.errors.map((e) => `${e.field}: ${e.message}`).join("; ")
    : "";
  return fields ? `${head} (${fields})` : head;
}
