"""Offline LLM ``llama``: llama-cpp-python with Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF).

The GGUF is joined from six PyPI data packages and checked by
:mod:`thinnest.providers.models`. The prompt is ChatML rendered here (not the GGUF's
Jinja template) so that it stays short and identical from turn to turn: llama.cpp reuses
the KV cache of the longest common prefix, and a RAM prompt cache keeps the state of
other conversations sharing the process's model, which keeps time to first token low.

Tools are described in the system prompt in Qwen's ``<tool_call>`` convention (the tags
are special tokens, dropped from the output text); the model answers a tool call as JSON
text, which :mod:`thinnest.providers._toolcalls` parses and validates into livekit-agents
function calls. An invalid call is retried once with the error shown to the model; a
second failure becomes a short spoken apology. Past calls are not shown to the model, only
their results, as plain facts in the user's turn (see :func:`render_prompt`): a model shown
call syntax in its own past answers writes it again, and the TTS would read it out.

One model is loaded per process and generation is serialised by a lock (llama.cpp
contexts are not thread-safe): concurrent calls in one worker process take turns.

Modules: :mod:`.options` (the options), :mod:`.model` (the loaded model, shared by the
process), :mod:`.prompt` (ChatML rendering), :mod:`.llm` (the LLM), :mod:`.stream` (one
answer, its tool calls and their one retry), :mod:`.calls` (calls made and answered),
:mod:`.remote` (the same LLM as a client of the shared model service's llama-server, with
``THINNEST_MODELS_URL`` set).
"""

from __future__ import annotations

from thinnest.providers.llama.llm import LlamaLLM, build
from thinnest.providers.llama.options import LlamaOptions
from thinnest.providers.llama.prompt import DEFAULT_SYSTEM_PROMPT, render_prompt
from thinnest.providers.llama.remote import RemoteLlamaLLM, build_remote

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "LlamaLLM",
    "LlamaOptions",
    "RemoteLlamaLLM",
    "build",
    "build_remote",
    "render_prompt",
]
