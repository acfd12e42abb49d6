// The app asks its "backend" for a session at /demo/session: in development that is the
// Thinnest dev stack's demo route (THINNEST_API_URL, default http://127.0.0.1:8000), proxied
// so the page and the route share an origin. In production, point /demo/session at your own
// backend, which calls POST /voice/start with your secret API key.
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

const api = process.env.THINNEST_API_URL || "http://127.0.0.1:8000";
// The demo routes answer only their own page (they refuse other sites' Origin): through the
// proxy, this page stands in for it.
const proxy = { "/demo": { target: api, changeOrigin: true, headers: { origin: api } } };

export default defineConfig({
  plugins: [react()],
  server: { proxy },
  preview: { proxy },
});
