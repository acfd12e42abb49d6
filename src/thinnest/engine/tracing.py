"""Optional OpenTelemetry traces of a call: the spans livekit-agents already makes of each
turn (``user_turn``, ``agent_turn``, ``llm_node``, ``tts_node``, ...), sent over OTLP/HTTP.

Off unless ``THINNEST_OTLP_TRACES_ENDPOINT`` names a collector. Each call process sets up its
own tracer provider for its one call, every span tagged with the session and agent ids, and
sends what is left when the call ends. Transcripts, prompts and tool payloads are stripped
from the spans (livekit-agents' PII filter) unless ``THINNEST_OTLP_TRACES_CONTENT`` is on.
"""

from __future__ import annotations

import asyncio

from livekit.agents.telemetry import set_tracer_provider
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from thinnest.config import Settings
from thinnest.contracts.dispatch import DispatchMetadata
from thinnest.log import logger

__all__ = ["CallTracing"]

log = logger.getChild("engine")

#: How long a call process waits at the end of a call for the collector to take its spans.
_FLUSH_MS = 5000


class CallTracing:
    """One call's tracer provider, installed for livekit-agents' spans.

    Args:
        endpoint: the collector's OTLP/HTTP traces URL (``http://collector:4318/v1/traces``).
        meta: the call's dispatch metadata (its ids tag every span).
        content: whether spans keep the conversation's text.
    """

    def __init__(self, *, endpoint: str, meta: DispatchMetadata, content: bool) -> None:
        self._provider = TracerProvider(resource=Resource({"service.name": "thinnest-worker"}))
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        set_tracer_provider(
            self._provider,
            metadata={"thinnest.session_id": meta.session_id, "thinnest.agent_id": meta.agent_id},
            allow_pii=content,
        )

    @classmethod
    def start(cls, settings: Settings, meta: DispatchMetadata) -> CallTracing | None:
        """The call's tracing, or None where no collector is configured."""
        if not settings.otlp_traces_endpoint:
            return None
        return cls(
            endpoint=settings.otlp_traces_endpoint,
            meta=meta,
            content=settings.otlp_traces_content,
        )

    async def aclose(self) -> None:
        """Send the spans still held, then stop (the call is over)."""

        def flush() -> None:
            if not self._provider.force_flush(_FLUSH_MS):
                log.warning("traces: the collector did not take the call's last spans")
            self._provider.shutdown()

        await asyncio.to_thread(flush)
