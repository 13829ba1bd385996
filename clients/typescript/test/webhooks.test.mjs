// verifyWebhook on its own: what it accepts and everything it must refuse.
// A vector signed by offload's Python signer (offload.outbound.webhooks) arrives in
// OFFLOAD_TEST_SIGNED when run through tests/integration/test_ts_client.py.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { test } from "node:test";

import { WebhookVerificationError, signWebhook, verifyWebhook } from "../dist/esm/index.js";

const SECRET = "whsec_" + Buffer.from("k".repeat(32)).toString("base64");
const OTHER = "whsec_" + Buffer.from("z".repeat(32)).toString("base64");
const BODY = '{"run_id":"01J","status":"completed"}';

async function signed(body = BODY, at = new Date(), secret = SECRET) {
  return { headers: await signWebhook(secret, "msg_1", body, at), body };
}

const refuses = (promise, pattern) =>
  assert.rejects(promise, (error) => {
    assert.ok(error instanceof WebhookVerificationError, String(error));
    if (pattern) assert.match(error.message, pattern);
    return true;
  });

test("accepts a good signature from a Request, a record or bytes", async () => {
  const { headers, body } = await signed();
  const request = new Request("http://x/cb", { method: "POST", headers, body });
  const fromRequest = await verifyWebhook(request, { secret: SECRET });
  assert.equal(fromRequest.id, "msg_1");
  assert.deepEqual(fromRequest.payload, { run_id: "01J", status: "completed" });
  assert.equal(fromRequest.text, BODY);
  const upper = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toUpperCase(), v]));
  assert.equal((await verifyWebhook({ headers: upper, body }, { secret: SECRET })).id, "msg_1");
  const bytes = new TextEncoder().encode(body);
  assert.equal((await verifyWebhook({ headers, body: bytes }, { secret: SECRET })).text, BODY);
});

test("a text body stays text", async () => {
  const { headers } = await signed("hello");
  assert.equal((await verifyWebhook({ headers, body: "hello" }, { secret: SECRET })).payload, "hello");
});

test("refuses a changed body, another secret, a missing header", async () => {
  const { headers } = await signed();
  await refuses(verifyWebhook({ headers, body: BODY.replace("completed", "failed") }, { secret: SECRET }), /no matching/);
  await refuses(verifyWebhook({ headers, body: BODY }, { secret: OTHER }), /no matching/);
  for (const name of ["webhook-id", "webhook-timestamp", "webhook-signature"]) {
    const partial = { ...headers };
    delete partial[name];
    await refuses(verifyWebhook({ headers: partial, body: BODY }, { secret: SECRET }), /missing/);
  }
  const otherId = { ...headers, "webhook-id": "msg_2" };
  await refuses(verifyWebhook({ headers: otherId, body: BODY }, { secret: SECRET }), /no matching/);
});

test("refuses stale and future timestamps, honours the tolerance", async () => {
  const old = await signed(BODY, new Date(Date.now() - 10 * 60_000));
  await refuses(verifyWebhook(old, { secret: SECRET }), /tolerance/);
  const future = await signed(BODY, new Date(Date.now() + 10 * 60_000));
  await refuses(verifyWebhook(future, { secret: SECRET }), /tolerance/);
  assert.equal((await verifyWebhook(old, { secret: SECRET, toleranceSeconds: 3600 })).id, "msg_1");
  const { headers } = await signed();
  await refuses(verifyWebhook({ headers: { ...headers, "webhook-timestamp": "12x" }, body: BODY }, { secret: SECRET }), /number/);
});

test("malformed signatures are refused, not thrown as other errors", async () => {
  const { headers } = await signed();
  for (const bad of ["v1,###", "v2," + headers["webhook-signature"].slice(3), "garbage", "v1,"]) {
    await refuses(verifyWebhook({ headers: { ...headers, "webhook-signature": bad }, body: BODY }, { secret: SECRET }));
  }
});

test("any v1 entry of a rotation list may match", async () => {
  const { headers } = await signed();
  const old = (await signed(BODY, new Date(), OTHER)).headers["webhook-signature"];
  const list = { ...headers, "webhook-signature": `${old} ${headers["webhook-signature"]}` };
  assert.equal((await verifyWebhook({ headers: list, body: BODY }, { secret: SECRET })).id, "msg_1");
});

test("during a secret rotation the receiver accepts the old and the new secret", async () => {
  const secrets = { secret: [SECRET, OTHER] };
  assert.equal((await verifyWebhook(await signed(), secrets)).id, "msg_1");
  assert.equal((await verifyWebhook(await signed(BODY, new Date(), OTHER), secrets)).id, "msg_1");
  const third = "whsec_" + Buffer.from("q".repeat(32)).toString("base64");
  await refuses(verifyWebhook(await signed(BODY, new Date(), third), secrets), /no matching/);
});

test("the secret comes from OFFLOAD_WEBHOOK_SECRET when not given; a bad secret is refused", async () => {
  const saved = process.env.OFFLOAD_WEBHOOK_SECRET;
  try {
    process.env.OFFLOAD_WEBHOOK_SECRET = SECRET;
    assert.equal((await verifyWebhook(await signed())).id, "msg_1");
    delete process.env.OFFLOAD_WEBHOOK_SECRET;
    await refuses(verifyWebhook(await signed()), /no webhook secret/);
    await refuses(verifyWebhook(await signed(), { secret: "whsec_!!!" }), /base64/);
  } finally {
    if (saved === undefined) delete process.env.OFFLOAD_WEBHOOK_SECRET;
    else process.env.OFFLOAD_WEBHOOK_SECRET = saved;
  }
});

test("verifies what offload's Python signer produced", { skip: !process.env.OFFLOAD_TEST_SIGNED }, async () => {
  const vector = JSON.parse(process.env.OFFLOAD_TEST_SIGNED);
  const at = new Date(Number(vector.headers["webhook-timestamp"]) * 1000);
  const verified = await verifyWebhook(
    { headers: vector.headers, body: vector.body },
    { secret: vector.secret, now: at },
  );
  assert.equal(verified.id, vector.headers["webhook-id"]);
  const ours = await signWebhook(vector.secret, verified.id, vector.body, at);
  assert.equal(ours["webhook-signature"], vector.headers["webhook-signature"]);
});

test("the CommonJS build exports the same API", () => {
  const require = createRequire(import.meta.url);
  const cjs = require("../dist/cjs/index.js");
  for (const name of ["OffloadClient", "OffloadError", "verifyWebhook", "signWebhook", "createTask",
    "createTasks", "getRun", "waitRun", "cancelRun", "replayRun", "sendEvent"]) {
    assert.equal(typeof cjs[name], "function", name);
  }
  const viaPackage = require("@offload/client");
  assert.equal(typeof viaPackage.verifyWebhook, "function");
});
