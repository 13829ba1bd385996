import { inngest } from "./client.js";

// A multi-step order workflow: each step's result is recorded once by offload and
// replayed on later calls, so a crash or redeploy between steps never repeats a charge.
export const fulfilOrder = inngest.createFunction(
  { id: "fulfil-order", retries: 5, triggers: [{ event: "shop/order.placed" }] },
  async ({ event, step }) => {
    const total = await step.run("price", () =>
      event.data.items.reduce((sum, item) => sum + item.price * item.qty, 0));
    const charge = await step.run("charge", () => ({ id: `ch_${event.data.orderId}`, total }));
    await step.sleep("cool-off", "1s");
    const shipment = await step.run("ship", () => ({ tracking: `TRK-${event.data.orderId}` }));
    return { orderId: event.data.orderId, charge, shipment };
  },
);

export const functions = [fulfilOrder];
