// A Node app written with the official inngest npm SDK, exactly as a user would,
// pointed at offload by environment variables only (INNGEST_DEV or INNGEST_BASE_URL +
// INNGEST_SIGNING_KEY). The tests drive it through offload's API.
import http from "node:http";
import { Inngest, NonRetriableError, RetryAfterError } from "inngest";
import { serve } from "inngest/node";

const inngest = new Inngest({ id: "node-app" });
const counts = {}; // step executions, reported at GET /counts
const bump = (key) => { counts[key] = (counts[key] || 0) + 1; };

const child = inngest.createFunction({ id: "child", triggers: [{ event: "node/never" }] },
    async ({ event, step }) => {
      if (event.data.fail) throw new NonRetriableError("child refused");
      if (event.data.slow) await step.sleep("slow", "10s");
      return await step.run("double", () => event.data.n * 2);
    });

const fns = [
  inngest.createFunction({ id: "sequential", triggers: [{ event: "node/sequential" }] },
    async ({ event, step }) => {
      const a = await step.run("a", () => { bump("sequential.a"); return event.data.n + 1; });
      const b = await step.run("b", () => { bump("sequential.b"); return a * 2; });
      const c = await step.run("c", () => { bump("sequential.c"); return { a, b, tag: "ü✓" }; });
      return c;
    }),
  inngest.createFunction({ id: "shapes", triggers: [{ event: "node/shapes" }] },
    async ({ step }) => {
      const values = [null, true, 0, -1.5, "", "text ü", [], [1, [2, {}]], { a: { b: [null] } }];
      const out = [];
      for (const [i, v] of values.entries()) out.push(await step.run(`v${i}`, () => v));
      const dup1 = await step.run("same", () => "first");
      const dup2 = await step.run("same", () => "second");
      return { out, dup1, dup2 };
    }),
  inngest.createFunction({ id: "sleeper", triggers: [{ event: "node/sleep" }] },
    async ({ step }) => {
      await step.sleep("nap", "1s");
      await step.sleepUntil("until", new Date(Date.now() + 500));
      return await step.run("after", () => "woke");
    }),
  inngest.createFunction({ id: "waiter", triggers: [{ event: "node/wait" }] },
    async ({ event, step }) => {
      const got = await step.waitForEvent("w", {
        event: "node/wait.fulfil", timeout: event.data.timeout || "20s",
        if: "event.data.id == async.data.id",
      });
      return { matched: got ? got.data : null };
    }),
  child,
  inngest.createFunction({ id: "parent", triggers: [{ event: "node/invoke" }] },
    async ({ event, step }) => {
      try {
        const r = await step.invoke("call-child", {
          function: child, data: event.data, timeout: event.data.timeout || "20s",
        });
        return { result: r };
      } catch (err) {
        return { error: String(err && err.message ? err.message : err) };
      }
    }),
  inngest.createFunction({ id: "parallel", triggers: [{ event: "node/parallel" }] },
    async ({ step }) => {
      const [x, y, z] = await Promise.all([
        step.run("x", () => { bump("parallel.x"); return 1; }),
        step.run("y", () => { bump("parallel.y"); return 2; }),
        step.run("z", () => { bump("parallel.z"); return 3; }),
      ]);
      const total = await step.run("sum", () => { bump("parallel.sum"); return x + y + z; });
      return total;
    }),
  inngest.createFunction({ id: "flaky", triggers: [{ event: "node/flaky" }], retries: 3 },
    async ({ step }) => {
      return await step.run("maybe", () => {
        bump("flaky.maybe");
        if (counts["flaky.maybe"] < 3) throw new Error("transient");
        return "ok after retries";
      });
    }),
  inngest.createFunction({
    id: "doomed", triggers: [{ event: "node/doomed" }],
    onFailure: async ({ event, step }) => {
      await step.run("record", () => { bump("doomed.onFailure"); return event.data.error.message; });
    },
  }, async ({ step }) => {
    await step.run("fail", () => { throw new NonRetriableError("no way"); });
  }),
  inngest.createFunction({ id: "later", triggers: [{ event: "node/later" }], retries: 1 },
    async ({ step }) => {
      return await step.run("rate", () => {
        bump("later.rate");
        if (counts["later.rate"] < 2) throw new RetryAfterError("slow down", "1s");
        return "done";
      });
    }),
  inngest.createFunction({ id: "nosteps", triggers: [{ event: "node/nosteps" }] },
    async ({ event }) => ({ echo: event.data })),
  inngest.createFunction({
    id: "multi", triggers: [{ event: "node/multi.a" }, { event: "node/multi.b" }],
  }, async ({ event }) => event.name),
  inngest.createFunction({ id: "nightly", triggers: [{ cron: "TZ=Europe/Paris 0 3 * * *" }] },
    async ({ step }) => await step.run("report", () => "done")),
  inngest.createFunction({ id: "steady", triggers: [{ event: "node/steady" }] },
    async ({ event, step }) => {
      const one = await step.run("one", () => { bump(`steady.${event.data.k}.one`); return 1; });
      await step.sleep("pause", "2s");
      const two = await step.run("two", () => { bump(`steady.${event.data.k}.two`); return 2; });
      return one + two;
    }),
];

const handler = serve({ client: inngest, functions: fns });
const port = Number(process.env.PORT || 3939);
http.createServer((req, res) => {
  if (req.url === "/counts") {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify(counts));
    return;
  }
  if (req.url.startsWith("/api/inngest")) return handler(req, res);
  res.statusCode = 404;
  res.end("not found");
}).listen(port, "127.0.0.1", () => console.log(`node app listening on ${port}`));
