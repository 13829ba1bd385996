// Against `offload serve` with an API key (tests/integration/test_ts_client.py sets
// OFFLOAD_URL, OFFLOAD_API_KEY and OFFLOAD_WEBHOOK_SECRET): the key is sent as a bearer
// token, and a missing or wrong key is a 401 problem.
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer } from "node:http";
import { test } from "node:test";

import { OffloadClient, OffloadError, createTask, verifyWebhook, waitRun } from "../dist/esm/index.js";

const { OFFLOAD_URL, OFFLOAD_API_KEY, OFFLOAD_WEBHOOK_SECRET } = process.env;

test("the API key from the environment authenticates; none or a wrong one is refused", async () => {
  assert.ok(OFFLOAD_URL && OFFLOAD_API_KEY && OFFLOAD_WEBHOOK_SECRET, "run through test_ts_client.py");
  const verified = [];
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    verified.push((await verifyWebhook({ headers: req.headers, body: Buffer.concat(chunks) })).id);
    res.writeHead(204).end();
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  try {
    const url = `http://127.0.0.1:${server.address().port}/work`;
    const accepted = await createTask(url, { body: { n: 1 } });   // OFFLOAD_URL + OFFLOAD_API_KEY
    assert.equal((await waitRun(accepted.id, { timeout: 20 })).status, "completed");
    assert.deepEqual(verified, [`msg_${accepted.id}`]);

    for (const apiKey of ["", "ofk_admin_wrong-key-000000000000000"]) {
      const client = new OffloadClient({ baseUrl: OFFLOAD_URL, apiKey, retries: 0 });
      await assert.rejects(client.getRun(accepted.id), (error) => {
        assert.ok(error instanceof OffloadError);
        assert.equal(error.status, 401);
        assert.equal(error.problem.status, 401);
        return true;
      });
    }
  } finally {
    server.close();
  }
});
