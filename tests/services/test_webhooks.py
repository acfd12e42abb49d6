"""Webhook signing, backoff and the latency summary, and the verification snippet that
docs/webhooks.md gives receivers (run as it is written there)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import re
import time
from pathlib import Path
from typing import Any

import pytest

from thinnest.services.webhooks import (
    MAX_DELAY,
    latency_summary,
    next_delay,
    sign,
    signed_headers,
)
from thinnest.store.webhooks import new_secret

pytestmark = pytest.mark.unit

DOC = Path(__file__).parents[2] / "docs" / "webhooks.md"


def documented_verify() -> Any:
    """The ``verify`` function of docs/webhooks.md's python block."""
    block = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert block is not None
    namespace: dict[str, Any] = {}
    exec(block.group(1), namespace)  # noqa: S102 - the documented snippet itself
    return namespace["verify"]


def test_signature_is_hmac_sha256_of_id_timestamp_and_body_in_base64() -> None:
    key = bytes(range(32))
    secret = "whsec_" + base64.b64encode(key).decode()
    body = b'{"id":"msg_1","type":"webhook.test"}'
    expected = base64.b64encode(
        hmac.new(key, b"msg_1.1700000000." + body, hashlib.sha256).digest()
    ).decode()
    assert sign(secret, "msg_1", 1700000000, body) == f"v1,{expected}"
    assert sign(secret, "msg_2", 1700000000, body) != f"v1,{expected}"  # the id is signed


def test_the_documented_snippet_accepts_a_signature_and_refuses_tampering() -> None:
    verify = documented_verify()
    secret = new_secret()
    body = b'{"id":"msg_x","data":{}}'
    headers = signed_headers(secret, "msg_x", body, now=time.time())
    assert verify(secret, headers, body)
    assert not verify(secret, headers, body + b" ")
    assert not verify(new_secret(), headers, body)
    assert not verify(secret, {**headers, "webhook-id": "msg_y"}, body)
    old = signed_headers(secret, "msg_x", body, now=time.time() - 360)
    assert not verify(secret, old, body)  # six minutes old: a replay


def test_backoff_grows_fourfold_up_to_six_hours() -> None:
    rng = random.Random(7)
    for attempts, nominal in [
        (1, 10),
        (2, 40),
        (3, 160),
        (4, 640),
        (7, MAX_DELAY),
        (12, MAX_DELAY),
    ]:
        delays = [next_delay(attempts, 10.0, rng) for _ in range(50)]
        assert all(0.9 * nominal <= d <= 1.1 * nominal for d in delays), (attempts, delays)
        assert max(delays) - min(delays) > 0.05 * nominal  # jittered, not in step


def test_latency_summary_counts_each_stage_over_the_turns_that_have_it() -> None:
    turns: list[dict[str, Any]] = [
        {"stt": 0.1, "llm_ttft": 0.5, "voice_to_voice": 1.0},
        {"stt": 0.3, "voice_to_voice": 2.0},
        {},
        {"stt": 0.2, "llm_ttft": True, "tts_ttfb": "fast"},  # not numbers: left out
    ]
    summary = latency_summary(turns)
    assert set(summary) == {"stt", "llm_ttft", "voice_to_voice"}
    stt = summary["stt"]
    assert (stt.count, stt.mean, stt.p50, stt.p95, stt.max) == (3, 0.2, 0.2, 0.3, 0.3)
    assert summary["llm_ttft"].count == 1
    v2v = summary["voice_to_voice"]
    assert (v2v.count, v2v.p50, v2v.p95, v2v.max) == (2, 1.0, 2.0, 2.0)
    assert latency_summary([]) == {}
