"""Streaming synthesis for VITS voices (piper's ONNX models): audio before the sentence ends.

A piper voice is one ONNX graph from phoneme ids to audio, so a sentence is heard only
once all of it is synthesised (≈ 0.1 s per second of speech on one core). The graph has
three stages: the *prior* (text encoder and duration predictor: phoneme ids to a latent
``z_p`` and its mask, one frame per 256 samples), the *flow* (``z_p`` to the decoder's latent)
and the *decoder* (HiFi-GAN, latent to audio). The flow and the decoder are convolutions
along time that see only a few dozen frames either side, so they can run on a window of
frames padded with its neighbours and trimmed back, which reproduces the one-pass audio
(tested to 1e-4).

:func:`split_model` cuts the graph into those three ONNX models; :class:`StreamingVits`
runs the prior on the whole sentence, flow and decoder on a short first window (that audio
goes out at once), then the flow on the whole sentence and the decoder window by window.
The first sound of a 3 s sentence comes after ~0.1 s on one core instead of ~0.35 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from thinnest.errors import ConfigError
from thinnest.providers._extras import require

__all__ = [
    "CONTEXT",
    "FLOW_CONTEXT",
    "StreamingVits",
    "VitsParts",
    "Window",
    "split_model",
    "windows",
]

#: Latent frames of context on each side of a decoded window. The decoder's receptive
#: field ends before 12 (measured: 4 frames differ by 2 %, 8 by 0.15 %, 12 by < 1e-4).
CONTEXT = 12
#: Extra frames the flow sees past the first window's decoder context (measured: 16 differ
#: from the one-pass audio by < 1e-5).
FLOW_CONTEXT = 16
_FIRST = 20  # frames (~0.23 s at 22.05 kHz) in the first window
# Each later window doubles, up to this: few windows (each costs 2 x CONTEXT frames more),
# and each is decoded while the audio before it plays (a window takes ~1/8 of its duration
# on one core, plus the flow of the whole sentence before the second one).
_LARGEST = 240
_DECODER = "/dec/"  # node-name prefixes of piper's (PyTorch) export
_FLOW = "/flow/"


@dataclass(frozen=True)
class Window:
    """One decode: frames ``[start, end)`` are kept, ``[lo, hi)`` go into the decoder."""

    lo: int
    start: int
    end: int
    hi: int


def windows(
    frames: int, *, first: int = _FIRST, largest: int = _LARGEST, context: int = CONTEXT
) -> list[Window]:
    """Cut ``frames`` latent frames into decode windows: ``first`` frames, then each twice
    the one before, up to ``largest``.

    Each window keeps ``context`` frames of its neighbours (fewer at the ends).
    """
    cuts: list[Window] = []
    start, size = 0, first
    while start < frames:
        end = min(frames, start + size)
        cuts.append(Window(max(0, start - context), start, end, min(frames, end + context)))
        start, size = end, min(largest, 2 * size)
    return cuts


@dataclass(frozen=True)
class VitsParts:
    """A VITS model cut for streaming (serialised ONNX models and the tensors between them).

    Attributes:
        prior: phoneme ids to ``flow_inputs`` (``z_p`` then its mask), or to ``latent`` when
            the flow could not be cut out (``flow`` is None).
        flow: ``flow_inputs`` to ``latent``.
        decoder: ``latent`` to audio.
    """

    prior: bytes
    flow: bytes | None
    decoder: bytes
    flow_inputs: tuple[str, str] | None
    latent: str


def _flow_inputs(graph: Any, latent: str) -> tuple[str, str] | None:
    """``(z_p, mask)``: the tensors that enter the flow from before it, if it has two."""
    nodes = list(graph.node)
    inside: set[str] = set()  # tensors computed from the flow's own tensors
    for node in nodes:
        if node.name.startswith(_FLOW) or any(name in inside for name in node.input):
            inside.update(node.output)
    weights = {init.name for init in graph.initializer}
    entering = []
    for node in nodes:
        if node.name.startswith(_FLOW):
            for name in node.input:
                if name and name not in inside and name not in weights and name not in entering:
                    entering.append(name)
    maker = next((node for node in nodes if latent in node.output), None)
    masks = [name for name in entering if maker is not None and name in maker.input]
    if len(entering) != 2 or len(masks) != 1:
        return None
    z_p = next(name for name in entering if name != masks[0])
    return z_p, masks[0]


def split_model(model: bytes) -> VitsParts:
    """Cut a piper VITS model into prior, flow and decoder.

    Raises:
        ConfigError: the model has no decoder named as piper exports it.
    """
    onnx = require("onnx", extra="piper", provider="piper")
    graph = onnx.load_from_string(model)
    latent = next(
        (node.input[0] for node in graph.graph.node if node.name.startswith(_DECODER)), None
    )
    if latent is None:
        raise ConfigError(
            "this piper voice has no decoder that thinnest can stream from; "
            "use a voice exported by piper's own training scripts",
            field="voice",
        )
    inputs = [value.name for value in graph.graph.input]
    outputs = [value.name for value in graph.graph.output]
    extractor = onnx.utils.Extractor(graph)
    decoder = extractor.extract_model([latent], outputs).SerializeToString()
    flow_inputs = _flow_inputs(graph.graph, latent)
    if flow_inputs is None:
        prior = extractor.extract_model(inputs, [latent]).SerializeToString()
        return VitsParts(prior, None, decoder, None, latent)
    prior = extractor.extract_model(inputs, list(flow_inputs)).SerializeToString()
    flow = extractor.extract_model(list(flow_inputs), [latent]).SerializeToString()
    return VitsParts(prior, flow, decoder, flow_inputs, latent)


class StreamingVits:
    """A split VITS voice: :meth:`stream` yields float audio window by window."""

    def __init__(self, model: bytes, *, session_options: Any) -> None:
        """Split ``model`` (the verified ONNX bytes) and open its parts on the CPU."""
        onnxruntime = require("onnxruntime", extra="piper", provider="piper")
        self.parts = split_model(model)

        def session(part: bytes | None) -> Any:
            if part is None:
                return None
            return onnxruntime.InferenceSession(
                part, sess_options=session_options, providers=["CPUExecutionProvider"]
            )

        self._prior = session(self.parts.prior)
        self._flow = session(self.parts.flow)
        self._decoder = session(self.parts.decoder)

    @property
    def prior(self) -> Any:
        """The prior's ``onnxruntime.InferenceSession`` (phoneme ids in)."""
        return self._prior

    def _flow_run(self, z_p: np.ndarray, mask: np.ndarray) -> np.ndarray:
        assert self.parts.flow_inputs is not None
        names = self.parts.flow_inputs
        return self._flow.run([self.parts.latent], {names[0]: z_p, names[1]: mask})[0]

    def _decode(self, latent: np.ndarray, window: Window) -> np.ndarray:
        audio = self._decoder.run(None, {self.parts.latent: latent[:, :, window.lo : window.hi]})
        flat = audio[0].reshape(-1)
        hop = flat.size // (window.hi - window.lo)
        return flat[(window.start - window.lo) * hop : (window.end - window.lo) * hop]

    def stream(self, feeds: dict[str, np.ndarray], **cuts: int) -> Iterator[np.ndarray]:
        """Audio of one sentence, one float array per :func:`windows` window."""
        prior = self._prior.run(None, feeds)
        frames = prior[0].shape[-1]
        if frames == 0:
            return
        plan = windows(frames, **cuts)
        if self._flow is None:
            latent = prior[0]
        else:
            z_p, mask = prior
            head = plan.pop(0)
            reach = min(frames, head.hi + FLOW_CONTEXT)
            yield self._decode(self._flow_run(z_p[:, :, :reach], mask[:, :, :reach]), head)
            if not plan:
                return
            latent = self._flow_run(z_p, mask)
        for window in plan:
            yield self._decode(latent, window)
