import { inngest } from "../../../inngest/client.js";

// Hand the work to offload in about a millisecond and answer at once.
export async function POST(request) {
  const order = await request.json();
  const { ids } = await inngest.send({ name: "shop/order.placed", data: order });
  return Response.json({ accepted: ids[0] }, { status: 202 });
}
