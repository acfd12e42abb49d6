// The whole public API of livekit-client, exposed as the global `LivekitClient`.
export * from "livekit-client";
