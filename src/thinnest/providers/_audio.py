"""Audio conversions shared by the offline providers (no I/O)."""

from __future__ import annotations

import numpy as np

from livekit import rtc

__all__ = ["to_mono_float32"]


def to_mono_float32(frames: rtc.AudioFrame | list[rtc.AudioFrame], sample_rate: int) -> np.ndarray:
    """Merge frames into one mono float32 array in [-1, 1] at ``sample_rate``.

    Args:
        frames: one frame or a buffer of frames (16-bit PCM, any rate and channel count).
        sample_rate: the rate the model wants.

    Returns:
        The samples; empty when ``frames`` is.
    """
    if isinstance(frames, list) and not frames:
        return np.zeros(0, dtype=np.float32)
    frame = rtc.combine_audio_frames(frames)
    if frame.sample_rate != sample_rate:
        resampler = rtc.AudioResampler(
            frame.sample_rate,
            sample_rate,
            num_channels=frame.num_channels,
            quality=rtc.AudioResamplerQuality.QUICK,
        )
        parts = [*resampler.push(frame), *resampler.flush()]
        if not parts:
            return np.zeros(0, dtype=np.float32)
        frame = rtc.combine_audio_frames(parts)
    pcm = np.frombuffer(frame.data, dtype=np.int16)
    if frame.num_channels > 1:
        pcm = pcm.reshape(-1, frame.num_channels).mean(axis=1)
    return pcm.astype(np.float32) / 32768.0
