import { Inngest } from "inngest";

// Nothing here names offload: the SDK reads INNGEST_DEV (dev) or INNGEST_BASE_URL,
// INNGEST_SIGNING_KEY and INNGEST_EVENT_KEY (production) from the environment.
export const inngest = new Inngest({ id: "shop" });
