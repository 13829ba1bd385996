import { fileURLToPath } from "node:url";

// @offload/client is a local file dependency (../../clients/typescript, symlinked into
// node_modules): Turbopack resolves files only under its root, so the root is the
// repository. An app that installs the package from a registry needs none of this.
const nextConfig = {
  turbopack: { root: fileURLToPath(new URL("../..", import.meta.url)) },
};

export default nextConfig;
