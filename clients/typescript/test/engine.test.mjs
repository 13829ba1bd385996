// The client against a real offload engine. tests/integration/test_ts_client.py starts the
// engine (SQLite and PostgreSQL in turn) and passes OFFLOAD_URL and OFFLOAD_WEBHOOK_SECRET.
// A loopback HTTP server in this process plays the task target and the callback receiver.
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";

import {
  OffloadClient,
  OffloadConnectionError,
  OffloadError,
  createTask,
  getRun,
  verifyWebhook,
  waitRun,
} from "../dist/esm/index.js";

const ENGINE = process.env.OFFLOAD_URL;
const SECRET = process.env.OFFLOAD_WEBHOOK_SECRET;
if (!ENGINE || !SECRET) {
  throw new Error("run through tests/integration/test_ts_client.py (OFFLOAD_URL, OFFLOAD_WEBHOOK_SECRET)");
}

const offload = new OffloadClient({ baseUrl: ENGINE });
const received = []; // { path, id, payload, verified } for each request the server got
const waiters = [];
let server;
let base;

function delivered(predicate, timeoutMs = 20_000) {
  const found = received.find(predicate);
  if (found) return Promise.resolve(found);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no matching delivery")), timeoutMs);
    waiters.push({ predicate, resolve: (value) => (clearTimeout(timer), resolve(value)) });
  });
}

before(async () => {
  server = createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    let entry;
    try {
      const { id, payload } = await verifyWebhook({ headers: req.headers, body }, { secret: SECRET });
      entry = { path: req.url, method: req.method, id, payload, verified: true };
    } catch (error) {
      entry = { path: req.url, method: req.method, verified: false, error: String(error) };
    }
    received.push(entry);
    for (const waiter of waiters.splice(0)) {
      if (waiter.predicate(entry)) waiter.resolve(entry);
      else waiters.push(waiter);
    }
    if (req.url.startsWith("/fail")) {
      res.writeHead(400, { "content-type": "application/json" }).end('{"error":"bad"}');
    } else {
      res.writeHead(200, { "content-type": "application/json" }).end(
        JSON.stringify({ echoed: entry.payload ?? null, path: req.url }),
      );
    }
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  base = `http://127.0.0.1:${server.address().port}`;
});

after(() => server.close());

describe("tasks", () => {
  test("createTask: 202, the target gets a signed call, the callback a signed outcome", async () => {
    const accepted = await offload.createTask(`${base}/target/one`, {
      body: { image: 42 },
      callback_url: `${base}/callback/one`,
      retries: 0,
    });
    assert.equal(accepted.outcome, "created");
    assert.equal(accepted.duplicate, false);
    assert.match(accepted.id, /^[0-9A-Z]{26}$/);

    const call = await delivered((e) => e.path === "/target/one");
    assert.equal(call.verified, true, call.error);
    assert.deepEqual(call.payload, { image: 42 });

    const callback = await delivered((e) => e.path === "/callback/one");
    assert.equal(callback.verified, true, callback.error);
    assert.equal(callback.payload.run_id, accepted.id);
    assert.equal(callback.payload.status, "completed");
    assert.equal(callback.payload.response.status, 200);
    assert.deepEqual(callback.payload.response.body, { echoed: { image: 42 }, path: "/target/one" });

    const run = await offload.waitRun(accepted.id, { timeout: 20 });
    assert.equal(run.status, "completed");
    assert.equal(run.function_id, "http");
    const full = await offload.getRun(accepted.id);
    assert.ok(full.steps.some((s) => s.kind === "callback" && s.status === "completed"), JSON.stringify(full.steps));
  });

  test("createTasks: a batch, answered in order", async () => {
    const accepted = await offload.createTasks(
      [1, 2, 3].map((n) => ({ url: `${base}/target/batch-${n}`, body: { n } })),
    );
    assert.equal(accepted.length, 3);
    const runs = await Promise.all(accepted.map((a) => offload.waitRun(a.id, { timeout: 20 })));
    assert.deepEqual(runs.map((r) => r.status), ["completed", "completed", "completed"]);
    assert.deepEqual(runs.map((r) => r.output.body.echoed.n), [1, 2, 3]);
  });

  test("an idempotency key answers the first run", async () => {
    const key = `idem-${Date.now()}-${Math.random()}`;
    const first = await offload.createTask(`${base}/target/idem`, { idempotency_key: key, delay: 30 });
    const second = await offload.createTask(`${base}/target/idem`, { idempotency_key: key, delay: 30 });
    assert.equal(second.id, first.id);
    assert.equal(second.duplicate, true);
    assert.equal(second.outcome, "duplicate");
    await offload.cancelRun(first.id);
  });

  test("a failed task: status failed, the error kept, replay starts a linked run", async () => {
    const accepted = await offload.createTask(`${base}/fail/x`, { retries: 0 });
    const run = await offload.waitRun(accepted.id, { timeout: 20 });
    assert.equal(run.status, "failed");
    assert.equal(run.output.status, 400);
    assert.ok(run.error && typeof run.error.name === "string");

    const replay = await offload.replayRun(accepted.id);
    assert.notEqual(replay.id, accepted.id);
    assert.equal(replay.replay_of, accepted.id);
    assert.equal((await offload.waitRun(replay.id, { timeout: 20 })).status, "failed");
  });

  test("cancelRun ends a delayed task; cancelling again is a 409 problem", async () => {
    const accepted = await offload.createTask(`${base}/target/never`, { delay: 60 });
    const cancelled = await offload.cancelRun(accepted.id);
    assert.equal(cancelled.status, "cancelled");
    await assert.rejects(offload.cancelRun(accepted.id), (error) => {
      assert.ok(error instanceof OffloadError);
      assert.equal(error.status, 409);
      assert.equal(error.problem.status, 409);
      return true;
    });
    assert.ok(!received.some((e) => e.path === "/target/never"));
  });

  test("name and correlation_id are kept on the run and filter listRuns", async () => {
    const name = `report-${Date.now()}`;
    const accepted = await offload.createTask(`${base}/target/named`, { name, correlation_id: `order-${name}` });
    await offload.waitRun(accepted.id, { timeout: 20 });
    const byName = await offload.listRuns({ name });
    assert.deepEqual(byName.data.map((r) => r.id), [accepted.id]);
    const byCorrelation = await offload.listRuns({ correlation_id: `order-${name}`, status: ["completed"] });
    assert.deepEqual(byCorrelation.data.map((r) => r.id), [accepted.id]);
  });

  test("the module functions use OFFLOAD_URL", async () => {
    const accepted = await createTask(`${base}/target/env`, { body: "plain text" });
    const run = await waitRun(accepted.id, { timeout: 20 });
    assert.equal(run.status, "completed");
    assert.equal((await getRun(accepted.id)).id, accepted.id);
    const call = await delivered((e) => e.path === "/target/env");
    assert.equal(call.payload, "plain text");
  });
});

describe("errors", () => {
  test("bad input: a 422 whose problem body names the field", async () => {
    await assert.rejects(offload.createTask("ftp://example.com/x", { retries: 99 }), (error) => {
      assert.ok(error instanceof OffloadError);
      assert.equal(error.status, 422);
      assert.equal(error.code, "invalid_request");
      const fields = error.errors.map((e) => e.field).sort();
      assert.deepEqual(fields, ["body.retries", "body.url"]);
      assert.match(error.message, /body\.url/);
      return true;
    });
  });

  test("an unknown run: 404 problem", async () => {
    await assert.rejects(offload.getRun("01ARZ3NDEKTSV4RRFFQ69G5FAV"), (error) => {
      assert.ok(error instanceof OffloadError);
      assert.equal(error.status, 404);
      assert.equal(error.problem.status, 404);
      assert.equal(typeof error.problem.title, "string");
      return true;
    });
  });

  test("an unreachable engine: OffloadConnectionError after the retries", async () => {
    const probe = createServer();
    probe.listen(0, "127.0.0.1");
    await once(probe, "listening");
    const port = probe.address().port;
    probe.close();
    await once(probe, "close");
    let calls = 0;
    const counting = (...args) => (calls++, fetch(...args));
    const dead = new OffloadClient({ baseUrl: `http://127.0.0.1:${port}`, retries: 2, fetch: counting });
    await assert.rejects(dead.getRun("x"), OffloadConnectionError);
    assert.equal(calls, 3); // a read is retried
    calls = 0;
    await assert.rejects(dead.createTask(`${base}/x`), OffloadConnectionError);
    assert.equal(calls, 1); // a submission without an idempotency key is not
    calls = 0;
    await assert.rejects(dead.createTask(`${base}/x`, { idempotency_key: "k" }), OffloadConnectionError);
    assert.equal(calls, 3); // with one it is: the engine answers the first run
  });
});

describe("events", () => {
  test("sendEvent answers the stored ids; a repeated id is deduplicated", async () => {
    const id = `evt-${Date.now()}`;
    const [first] = await offload.sendEvent({ name: "ts-client/hello", data: { a: 1 }, id });
    const [second] = await offload.sendEvent({ name: "ts-client/hello", data: { a: 1 }, id });
    assert.equal(second, first);
    const many = await offload.sendEvent([{ name: "ts-client/a" }, { name: "ts-client/b" }]);
    assert.equal(many.length, 2);
    const stored = await (await fetch(`${ENGINE}/v1/events/${first}`)).json();
    assert.equal(stored.name, "ts-client/hello");
    assert.deepEqual(stored.data, { a: 1 });
  });
});
