/**
 * Verify offload's signed calls and callbacks (Standard Webhooks) in a route handler.
 *
 * offload signs `"{webhook-id}.{webhook-timestamp}.{raw body}"` with HMAC-SHA256 under
 * the secret (`whsec_` + base64 key) and sends `webhook-signature: v1,<base64>` (a
 * space-separated list during a secret rotation). Verification uses WebCrypto
 * (`crypto.subtle.verify`, a constant-time comparison), so it runs in Node ≥ 20 and
 * in edge runtimes alike.
 */
import { WebhookVerificationError } from "./errors.js";

/** The default tolerance between the signature's timestamp and now, both ways. */
export const DEFAULT_TOLERANCE_SECONDS = 5 * 60;

const SECRET_PREFIX = "whsec_";

/** Headers as a `Headers` object or a plain record (Node's `IncomingHttpHeaders`). */
export type HeaderSource = Headers | Record<string, string | string[] | undefined>;

/** A raw request to verify when there is no `Request` object (Express, Node's http). */
export interface RawWebhook {
  headers: HeaderSource;
  /** The body exactly as received: verification fails on a re-serialised body. */
  body: string | Uint8Array | ArrayBuffer;
}

export interface VerifyOptions {
  /**
   * The signing secret (`whsec_…`); defaults to `process.env.OFFLOAD_WEBHOOK_SECRET`.
   * During a secret rotation pass both, new first: a delivery signed with either passes.
   */
  secret?: string | string[];
  /** Seconds the timestamp may differ from now (default 300). */
  toleranceSeconds?: number;
  /** The current time (for tests). */
  now?: Date;
}

/** A verified delivery. */
export interface VerifiedWebhook<T = unknown> {
  /** `webhook-id`: the same for every retry of one delivery, so use it to deduplicate. */
  id: string;
  /** `webhook-timestamp`, the send time of this attempt. */
  timestamp: Date;
  /** The raw body as text. */
  text: string;
  /** The body parsed as JSON, or the text itself when it is not JSON. */
  payload: T;
}

/**
 * Verify a delivery from offload and return its payload; throws
 * {@link WebhookVerificationError} when the headers are missing or malformed, the
 * timestamp is outside the tolerance, or no signature matches.
 *
 * ```ts
 * export async function POST(request: Request) {
 *   const { id, payload } = await verifyWebhook<CallbackPayload>(request);
 *   …
 * }
 * ```
 */
export async function verifyWebhook<T = unknown>(
  input: Request | RawWebhook,
  options: VerifyOptions = {},
): Promise<VerifiedWebhook<T>> {
  const secrets = [options.secret ?? envSecret()].flat().filter((s): s is string => !!s);
  if (secrets.length === 0) {
    throw new WebhookVerificationError(
      "no webhook secret: pass options.secret or set OFFLOAD_WEBHOOK_SECRET",
    );
  }
  const keys = await Promise.all(secrets.map(importKey));
  const headers = input.headers;
  const id = header(headers, "webhook-id");
  const stamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  if (!id || !stamp || !signatures) {
    throw new WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature");
  }
  if (!/^\d{1,15}$/.test(stamp)) {
    throw new WebhookVerificationError("webhook-timestamp is not a number of seconds");
  }
  const seconds = Number(stamp);
  const now = (options.now ?? new Date()).getTime() / 1000;
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  if (Math.abs(now - seconds) > tolerance) {
    throw new WebhookVerificationError("webhook-timestamp is outside the tolerance");
  }
  const body = await rawBody(input);
  const signed = concat(new TextEncoder().encode(`${id}.${stamp}.`), body);
  for (const entry of signatures.split(" ")) {
    const comma = entry.indexOf(",");
    if (comma < 0 || entry.slice(0, comma) !== "v1") continue;
    const signature = decodeBase64(entry.slice(comma + 1));
    if (!signature) continue;
    for (const key of keys) {
      if (await crypto.subtle.verify("HMAC", key, signature, signed)) {
        const text = new TextDecoder().decode(body);
        return { id, timestamp: new Date(seconds * 1000), text, payload: parse<T>(text) };
      }
    }
  }
  throw new WebhookVerificationError("no matching signature");
}

/**
 * The Standard Webhooks headers for `body` (what offload sends). For tests of your own
 * handlers and for forwarding; offload itself signs its calls.
 */
export async function signWebhook(
  secret: string,
  id: string,
  body: string | Uint8Array,
  timestamp: Date = new Date(),
): Promise<Record<"webhook-id" | "webhook-timestamp" | "webhook-signature", string>> {
  const key = await importKey(secret);
  const stamp = String(Math.floor(timestamp.getTime() / 1000));
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
  const mac = await crypto.subtle.sign(
    "HMAC", key, concat(new TextEncoder().encode(`${id}.${stamp}.`), bytes),
  );
  return {
    "webhook-id": id,
    "webhook-timestamp": stamp,
    "webhook-signature": `v1,${encodeBase64(new Uint8Array(mac))}`,
  };
}

function envSecret(): string | undefined {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process
    ?.env;
  return env?.OFFLOAD_WEBHOOK_SECRET;
}

async function importKey(secret: string): Promise<CryptoKey> {
  const raw = decodeBase64(secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret);
  if (!raw || raw.length === 0) {
    throw new WebhookVerificationError("the webhook secret is not whsec_ + base64");
  }
  return crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
    "verify",
  ]);
}

function header(headers: HeaderSource, name: string): string | undefined {
  if (typeof (headers as Headers).get === "function") {
    return (headers as Headers).get(name) ?? undefined;
  }
  const record = headers as Record<string, string | string[] | undefined>;
  for (const [key, value] of Object.entries(record)) {
    if (key.toLowerCase() === name) return Array.isArray(value) ? value.join(" ") : value;
  }
  return undefined;
}

async function rawBody(input: Request | RawWebhook): Promise<Uint8Array> {
  if (typeof (input as Request).arrayBuffer === "function") {
    return new Uint8Array(await (input as Request).arrayBuffer());
  }
  const { body } = input as RawWebhook;
  if (typeof body === "string") return new TextEncoder().encode(body);
  return body instanceof Uint8Array ? body : new Uint8Array(body);
}

function parse<T>(text: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    return text as T;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

function decodeBase64(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  try {
    const binary = atob(text);
    const out = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    return out;
  } catch {
    return undefined;
  }
}

function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}
