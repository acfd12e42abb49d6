"""Google providers: Cloud Speech STT ``google`` and Gemini LLM ``gemini`` (livekit-plugins-google).

Both authenticate with ``THINNEST_GOOGLE_API_KEY`` (for Cloud Speech through google-auth's
API-key credentials, so no service-account file is needed).

The plugin's STT always dials Google's own Speech host; a minimal subclass
(:func:`.stt._thinnest_stt`) replaces its client factory when ``GoogleSTTOptions.endpoint``
is set, so that the gRPC client dials that endpoint instead, bounds each ``recognize``
attempt, and watches each stream (:mod:`.stream`): a server that answers nothing to seconds
of loud audio is a timeout, which livekit-agents answers with a new stream.

Modules: :mod:`.options` (both providers' options and their key check), :mod:`.stt`,
:mod:`.stream` (the watched Speech stream), :mod:`.llm`.
"""

from __future__ import annotations

from thinnest.providers.google.llm import build_llm
from thinnest.providers.google.options import V2_MODELS, GeminiOptions, GoogleSTTOptions, check
from thinnest.providers.google.stt import build_stt, is_loopback

__all__ = [
    "V2_MODELS",
    "GeminiOptions",
    "GoogleSTTOptions",
    "build_llm",
    "build_stt",
    "check",
    "is_loopback",
]
