// Bundles livekit-client (pinned in package-lock.json) into one static file that the Thinnest
// API serves at /web/livekit-client.js: the demo page and the Voice Widget load it from there,
// never from a CDN. Run by scripts/setup.sh (`npm ci --ignore-scripts && npm run build`).
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";

const out = "../../src/thinnest/web/livekit-client.js";
await build({
  entryPoints: ["src/livekit.js"],
  bundle: true,
  format: "iife",
  globalName: "LivekitClient",
  minify: true,
  target: ["es2020"],
  legalComments: "eof",
  outfile: out,
  logLevel: "warning",
});
const digest = createHash("sha256").update(readFileSync(out)).digest("hex");
console.log(`built ${out} (sha256 ${digest.slice(0, 16)})`);
