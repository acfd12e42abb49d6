"""Each call keeps one slot of the shared LLM server, so its prompt stays cached.

The engine drafts an answer on the first transcript and cancels it when the words change;
the redraft must read only its new words, not the whole prompt in another slot.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.modelsvc.conftest import ModelService
from thinnest.modelsvc.slots import SlotAffinity

# --- the assignment ------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_call_keeps_its_slot_and_new_calls_spread_over_the_free_ones() -> None:
    slots = SlotAffinity(4)
    first = [slots.slot_for(f"call-{i}") for i in range(4)]
    assert sorted(first) == [0, 1, 2, 3]
    for _ in range(3):
        assert [slots.slot_for(f"call-{i}") for i in range(4)] == first


def test_more_calls_than_slots_share_the_least_recently_given_slot() -> None:
    clock = _Clock()
    slots = SlotAffinity(2, clock=clock)
    a = slots.slot_for("a")
    clock.now += 1
    b = slots.slot_for("b")
    clock.now += 1
    assert slots.slot_for("c") == a  # both hold one call; a's was given first
    clock.now += 1
    assert slots.slot_for("d") == b
    assert slots.calls() == 4


def test_a_silent_call_gives_its_place_up() -> None:
    clock = _Clock()
    slots = SlotAffinity(2, idle=60, clock=clock)
    a = slots.slot_for("a")
    clock.now += 1
    slots.slot_for("b")
    clock.now += 30
    slots.slot_for("b")  # b keeps asking, a is silent
    clock.now += 45
    assert slots.slot_for("c") == a  # a's place was given up: c takes the free slot
    assert slots.calls() == 2


def test_no_slots_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SlotAffinity(0)


# --- the real service ----------------------------------------------------------------------

#: A system prompt long enough that reading it again shows (about 250 tokens).
_SYSTEM = "You are the booking assistant of a small restaurant. Answer in one short sentence. " * 12


def _chat(key: str, user: str, max_tokens: int) -> dict[str, object]:
    return {
        "model": "qwen2.5-coder-0.5b-instruct",
        "messages": [
            {"role": "system", "content": _SYSTEM},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": user},
        ],
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": 0,
        "prompt_cache_key": key,
    }


async def _ask(
    http: httpx.AsyncClient, url: str, body: dict[str, object], *, cancel: bool = False
) -> tuple[str | None, dict[str, int]]:
    """Stream an answer (or only its first words, then hang up); its slot and timings."""
    timings: dict[str, int] = {}
    async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as answer:
        assert answer.status_code == 200, await answer.aread()
        slot = answer.headers.get("x-llm-slot")
        async for line in answer.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            timings = chunk.get("timings") or timings
            delta = (chunk.get("choices") or [{}])[0].get("delta") or {}
            if cancel and delta.get("content"):
                break  # the engine cancels a draft the moment the words change
    return slot, timings


async def test_a_redraft_after_a_cancelled_draft_reads_only_its_new_words(
    models_service: ModelService,
) -> None:
    url = models_service.url
    async with httpx.AsyncClient(timeout=120) as http:
        for call in range(3):
            key = f"test-call-{call}"
            slot, first = await _ask(http, url, _chat(key, "Hi.", 1))
            assert slot is not None, "the service did not pin the call to a slot"
            prompt = first["prompt_n"] + first.get("cache_n", 0)
            assert prompt > 200
            for turn in range(3):
                words = f"I would like a table for {turn + 2}"
                drafted, _ = await _ask(http, url, _chat(key, words, 40), cancel=True)
                again, timings = await _ask(http, url, _chat(key, words + " tomorrow.", 8))
                assert drafted == again == slot
                # Only the caller's words are new; the instructions come from the cache.
                assert timings["cache_n"] >= prompt - 8, timings
                assert timings["prompt_n"] < 40, timings


async def test_a_request_that_names_no_call_is_passed_on_as_it_is(
    models_service: ModelService,
) -> None:
    body = _chat("", "Hi.", 1)
    del body["prompt_cache_key"]
    async with httpx.AsyncClient(timeout=120) as http:
        slot, timings = await _ask(http, models_service.url, body)
    assert slot is None and timings["prompt_n"] > 0
