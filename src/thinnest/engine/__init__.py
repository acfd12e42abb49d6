"""The voice engine: a livekit-agents worker that holds each session's conversation."""
