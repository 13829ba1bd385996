import { serve } from "inngest/next";
import { inngest } from "../../../inngest/client.js";
import { functions } from "../../../inngest/functions.js";

// The SDK's standard Next.js route: GET (introspection), PUT (sync), POST (run a step).
export const { GET, POST, PUT } = serve({ client: inngest, functions });
