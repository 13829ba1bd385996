// SDK conformance scenarios written with the official, unmodified inngest npm SDK
// (4.24.0), one function per behaviour; tests/integration/test_sdk_conformance_node.py
// drives them through offload. Pointed at offload by environment variables only.
// What the functions saw is readable at GET /seen ({"<run id>/<what>": [values]}).
import http from "node:http";
import { Inngest, Middleware, NonRetriableError, referenceFunction } from "inngest";
import { serve } from "inngest/node";

const inngest = new Inngest({ id: "conf-node" });
const seen = {};
const see = (runId, what, value) => {
  const key = `${runId}/${what}`;
  (seen[key] = seen[key] || []).push(value);
  return seen[key].length;
};

const child = inngest.createFunction(
  { id: "child", triggers: [{ event: "conf/never" }], retries: 0 },
  async ({ event, step }) => {
    if (event.data.fail) {
      throw new NonRetriableError("child refused", { cause: new Error("root cause") });
    }
    if (event.data.sleep) await step.sleep("nap", `${event.data.sleep}s`);
    return { n2: (event.data.n || 0) * 2 };
  });

const longChild = inngest.createFunction({
  id: "long-child", triggers: [{ event: "conf/never" }], retries: 0,
  cancelOn: [{ event: "conf/cancel-child", if: "event.data.k == async.data.k" }],
}, async ({ step }) => { await step.sleep("long", "1h"); return "woke"; });

const overdueChild = inngest.createFunction({
  id: "overdue-child", triggers: [{ event: "conf/never" }], retries: 0,
  timeouts: { finish: "2s" },
}, async ({ step }) => { await step.sleep("long", "1h"); return "woke"; });

class Wrap extends Middleware.BaseMiddleware {
  id = "wrap";
  async wrapFunctionHandler({ next }) {
    const out = await next();
    return { wrapped: out };
  }
}

const fns = [
  inngest.createFunction({ id: "race", triggers: [{ event: "conf/race" }], retries: 0 },
    async ({ step, group }) => {
      const winner = await group.parallel({ mode: "race" }, () => Promise.race([
        step.run("fast", () => "fast"),
        step.run("slow", async () => { await new Promise((r) => setTimeout(r, 1500)); return "slow"; }),
      ]));
      const tail = await step.run("tail", () => "t");
      return { winner, tail };
    }),
  inngest.createFunction({
    id: "debounced", triggers: [{ event: "conf/debounced" }],
    debounce: { period: "1s", key: "event.data.k" },
  }, async ({ event }) => event.data.n),
  inngest.createFunction({
    id: "rate-limited", triggers: [{ event: "conf/rate-limited" }],
    rateLimit: { limit: 1, period: "1m", key: "event.data.k" },
  }, async ({ event }) => event.data.n),
  inngest.createFunction({
    id: "throttled", triggers: [{ event: "conf/throttled" }],
    throttle: { limit: 1, period: "2s", key: "event.data.k" },
  }, async ({ step }) => await step.run("at", () => Date.now() / 1000)),
  inngest.createFunction({
    id: "singleton-skip", triggers: [{ event: "conf/singleton-skip" }],
    singleton: { key: "event.data.k", mode: "skip" },
  }, async ({ event, step }) => { await step.sleep("hold", "2s"); return event.data.n; }),
  inngest.createFunction({
    id: "middleware", triggers: [{ event: "conf/middleware" }], middleware: [Wrap],
  }, async () => "value"),
  child,
  longChild,
  overdueChild,
  inngest.createFunction(
    { id: "invoke-ended", triggers: [{ event: "conf/invoke-ended" }], retries: 0 },
    async ({ event, step }) => {
      try {
        await step.invoke("call-child", {
          function: event.data.overdue ? overdueChild : longChild, data: { k: event.data.k },
        });
      } catch (err) {
        return { name: err.name, message: err.message };
      }
      return "unreachable";
    }),
  inngest.createFunction(
    { id: "parallel-mixed", triggers: [{ event: "conf/parallel-mixed" }], retries: 0 },
    async ({ step }) => {
      const group = await Promise.all([
        step.run("quick-a", () => "a"),
        step.invoke("call-child", { function: child, data: { n: 4, sleep: 1 } }),
        step.run("quick-b", () => "b"),
        step.sleep("nap", "1s"),
        step.waitForEvent("hold", { event: "conf/parallel.never", timeout: "2s" }),
      ]);
      const tail = await step.run("after", () => "tail");
      return { group, tail };
    }),
  inngest.createFunction(
    { id: "invoke-fails", triggers: [{ event: "conf/invoke-fails" }], retries: 0 },
    async ({ step }) => {
      try {
        await step.invoke("call-child", { function: child, data: { fail: true } });
      } catch (err) {
        return { name: err.name, message: err.message,
                 cause: err.cause ? { name: err.cause.name, message: err.cause.message } : null };
      }
      return "unreachable";
    }),
  inngest.createFunction(
    { id: "invoke-missing", triggers: [{ event: "conf/invoke-missing" }], retries: 0 },
    async ({ step }) => {
      try {
        await step.invoke("call-nobody", {
          function: referenceFunction({ appId: "no-such-app", functionId: "missing" }),
          data: {},
        });
      } catch (err) {
        return { name: err.name, message: err.message };
      }
      return "unreachable";
    }),
  inngest.createFunction(
    { id: "step-error", triggers: [{ event: "conf/step-error" }], retries: 0 },
    async ({ step }) => {
      await step.run("broken", () => {
        const err = new Error("step broke", { cause: new TypeError("deeper") });
        err.code = "E_BROKEN";
        throw err;
      });
    }),
  inngest.createFunction(
    { id: "cause-chain", triggers: [{ event: "conf/cause-chain" }], retries: 0 },
    async ({ step }) => {
      try {
        await step.run("broken", () => {
          throw new Error("outer", { cause: new Error("middle", { cause: new Error("inner") }) });
        });
      } catch (err) {
        const chain = [];
        for (let e = err; e; e = e.cause) chain.push(e.message);
        return chain;
      }
      return "unreachable";
    }),
  inngest.createFunction({
    id: "doomed", triggers: [{ event: "conf/doomed" }],
    onFailure: async ({ event }) => { see(event.data.run_id, "on_failure", event.data); },
  }, async () => {
    throw new NonRetriableError("no way", { cause: new Error("because") });
  }),
  inngest.createFunction(
    { id: "retry-history", triggers: [{ event: "conf/retry-history" }], retries: 3 },
    async ({ step, attempt, runId }) => {
      const first = await step.run("maybe", () => {
        const n = see(runId, "attempt", attempt);
        if (n < 3) throw new Error(`transient ${n}`);
        return "ok";
      });
      const then = await step.run("then", () => see(runId, "then-attempt", attempt));
      return { first, then };
    }),
  inngest.createFunction({ id: "wildcard", triggers: [{ event: "confwild/*" }] },
    async ({ event }) => event.name),
  inngest.createFunction({ id: "sender", triggers: [{ event: "conf/sender" }] },
    async ({ step }) => {
      const { ids } = await step.sendEvent("send", { name: "conf/sent", data: { k: 1 } });
      return { sent: ids.length };
    }),
  inngest.createFunction({
    id: "keyed", triggers: [{ event: "conf/keyed" }],
    concurrency: [{ limit: 2, key: "event.data.user" }],
  }, async ({ step }) => await step.run("work", () => "done")),
  inngest.createFunction(
    { id: "big-steps", triggers: [{ event: "conf/big-steps" }], retries: 0 },
    async ({ step }) => {
      const sizes = [];
      for (let i = 0; i < 3; i++) {
        const out = await step.run(`big-${i}`, () => String(i).repeat(1_500_000));
        sizes.push(out.length);
      }
      const tail = await step.run("tail", () => "small");
      return { sizes, tail };
    }),
  inngest.createFunction({
    id: "batch", triggers: [{ event: "conf/batch" }], retries: 0,
    batchEvents: { maxSize: 10, timeout: "3s" },
  }, async ({ events, step }) => {
    const chars = await step.run("size", () =>
      events.reduce((n, e) => n + JSON.stringify(e.data).length, 0));
    return { events: events.length, chars };
  }),
  inngest.createFunction({ id: "versioned", triggers: [{ event: "conf/versioned" }] },
    async ({ event }) => ({ v: event.v ?? null })),
];

const handler = serve({ client: inngest, functions: fns });
const port = Number(process.env.PORT || 3940);
http.createServer((req, res) => {
  if (req.url === "/seen") {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify(seen));
    return;
  }
  if (req.url === "/send-versioned") {
    inngest.send({ name: "conf/versioned", data: { a: 1 }, v: "2024-01-01.1" })
      .then((r) => { res.setHeader("content-type", "application/json"); res.end(JSON.stringify(r)); })
      .catch((e) => { res.statusCode = 500; res.end(String(e)); });
    return;
  }
  if (req.url.startsWith("/api/inngest")) return handler(req, res);
  res.statusCode = 404;
  res.end("not found");
}).listen(port, "127.0.0.1", () => console.log(`conformance app listening on ${port}`));
