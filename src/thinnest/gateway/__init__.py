"""The WebSocket gateway: ``websocket_url`` clients (PCM + JSON) bridged into a session's room."""

from __future__ import annotations
