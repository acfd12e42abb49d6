"""``thinnest bench conversation``: the pure measures, and a smoke run through the real stack
(LiveKit server, API, worker with the offline default models; one call over the WebSocket
gateway, one over WebRTC)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from thinnest.bench.conversation import (
    KINDS,
    LONG_REQUESTS,
    PAUSES_MS,
    Event,
    EventResult,
    analyse,
    build_script,
    caller_errors,
    contains_fact,
    gaps,
    insert_pause,
    parse_voice,
    stop_time,
    summarise,
)
from thinnest.errors import ConfigError

from ._run import run_bench


def _audio(*spans: tuple[float, float], step: float = 0.02, until: float = 10.0) -> list:
    """Agent frames every ``step`` s from 0 to ``until``: loud inside ``spans``, else quiet."""
    times = np.arange(0.0, until, step)
    return [(float(t), 2000.0 if any(a <= t < b for a, b in spans) else 0.0) for t in times]


# --- pure parts ---------------------------------------------------------------------------


def test_facts_match_whole_words_after_normalising_numbers_and_case() -> None:
    assert contains_fact("A spider has 8 legs.", ("eight",))
    assert contains_fact("Spiders have EIGHT legs!", ("eight",))
    assert contains_fact("It is twelve.", ("twelve",)) and contains_fact("12 months", ("twelve",))
    assert contains_fact("The capital of France is Paris.", ("paris",))
    assert not contains_fact("Parisian food is good.", ("paris",))  # a word, not a substring
    assert not contains_fact("I am not sure.", ("eight",))
    assert contains_fact("Cows say moo.", ("cow", "cows"))
    assert not contains_fact("", ("eight",))


def test_caller_wer_normalises_and_ignores_backchannels_it_was_not_asked_for() -> None:
    assert (
        caller_errors("How many legs does a spider have?", "how many legs does a spider have")[0]
        == 0
    )
    errors, words = caller_errors("What is the opposite of hot?", "What is the opposite on part?")
    assert (errors, words) == (2, 6)
    # an "mm-hmm" heard during the agent's answer is not an error of the caller's question
    assert caller_errors("Tell me a story.", "Tell me a story. Mm-hmm.")[0] == 0
    # but a word of the question itself is never dropped
    assert caller_errors("Turn right.", "Turn")[0] == 1
    assert caller_errors("It has 7 days.", "it has seven days")[0] == 0


def test_the_script_cycles_every_kind_and_pause_and_the_smoke_run_has_three_events() -> None:
    script = build_script(20)
    assert [e.index for e in script] == list(range(20))
    assert {e.kind for e in script} == set(KINDS)
    assert {e.pause_ms for e in script if e.kind == "pause"} == set(PAUSES_MS)
    assert build_script(20) == script  # deterministic
    for e in script:
        assert e.lines and all(line.strip() for line in e.lines)
        assert len(e.lines) == (1 if e.kind in ("question", "pause") else 2)
        assert bool(e.fact) == (e.kind != "backchannel")
    backchannel = next(e for e in script if e.kind == "backchannel")
    assert backchannel.reference == backchannel.lines[0]  # the "mm-hmm" is not to be heard
    smoke = build_script(99, smoke=True)
    assert [(e.kind, e.pause_ms) for e in smoke] == [
        ("pause", 600),
        ("barge_in", 0),
        ("backchannel", 0),
    ]
    assert {e.lines[0] for e in smoke[1:]} == {LONG_REQUESTS[0]}  # the story: long answers


def test_a_pause_is_inserted_at_a_quiet_gap_between_words() -> None:
    rate = 16000
    word = (8000 * np.sin(np.arange(rate // 2) * 0.3)).astype(np.int16)
    gap = np.zeros(rate // 10, np.int16)
    pcm = np.concatenate([word, gap, word, gap, word])  # gaps at 31 % and 66 % of the length
    out, at = insert_pause(pcm, 600, rate)
    assert len(out) == len(pcm) + int(0.6 * rate)
    assert word.size + gap.size // 2 - 800 <= at <= 2 * word.size + 2 * gap.size
    assert not out[at : at + int(0.6 * rate)].any()  # the inserted silence
    assert np.abs(pcm[at - 160 : at + 160].astype(int)).max() < 8000  # inside a quiet gap


def test_stop_time_is_the_last_loud_frame_before_the_quiet_gap() -> None:
    frames = _audio((1.0, 3.42))  # the agent speaks 1.0-3.42 s
    # the caller starts at 3.0: the agent's last loud frame arrives at 3.40
    assert stop_time(frames, 3.0, 0.3, 10.0) == pytest.approx(3.40)
    assert stop_time(_audio((1.0, 12.0), until=12.0), 3.0, 0.3, 12.0) is None  # never stopped
    # a pause shorter than the gap (a sentence break) does not count as the stop
    assert stop_time(_audio((1.0, 3.5), (3.7, 5.0)), 3.0, 0.3, 10.0) == pytest.approx(4.98)
    assert gaps(_audio((1.0, 3.0), (4.0, 5.0)), 0.0, 10.0, 0.6)[0] == pytest.approx((2.98, 4.0))


def _result(kind: str, lines: tuple[str, ...], fact: tuple[str, ...] = ()) -> EventResult:
    return EventResult(Event(0, kind, lines, fact, 600 if kind == "pause" else 0), "v", "ws")


def test_analyse_times_a_barge_in_and_its_answer() -> None:
    # agent answers 1-6 s; caller barges in at 2.0-3.0 s; agent stops at 2.26; answers at 4.0
    frames = _audio((1.0, 2.28), (4.0, 5.0))
    events = [
        {"type": "transcript", "role": "user", "final": True, "text": "Tell me a story", "_at": 1},
        {"type": "transcript", "role": "agent", "text": "Once", "interrupted": True, "_at": 2.6},
        {"type": "transcript", "role": "user", "final": True, "text": "What is 8?", "_at": 3.2},
        {"type": "transcript", "role": "agent", "text": "It is eight.", "_at": 5.2},
    ]
    r = analyse(
        _result("barge_in", ("Tell me a story.", "What is eight?"), ("eight",)),
        frames,
        events,
        [(0.0, 0.8), (2.0, 3.0)],
        pause_at=None,
        trigger=2.0,
        end=6.0,
        answer_timeout=20,
    )
    assert r.stop_ms == pytest.approx(260, abs=1)
    assert r.stopped and not r.void and r.missed_resume is False
    assert r.v2v_ms == pytest.approx(1000, abs=1)
    assert r.right and r.errors == 0 and r.answer == "It is eight."
    # the same, but the agent never answers the new question: a missed resume
    r = analyse(
        _result("barge_in", ("Tell me a story.", "What is eight?"), ("eight",)),
        _audio((1.0, 2.28)),
        events[:3],
        [(0.0, 0.8), (2.0, 3.0)],
        pause_at=None,
        trigger=2.0,
        end=6.0,
        answer_timeout=20,
    )
    assert r.missed_resume is True and r.right is False and r.v2v_ms is None
    # the answer ended on its own 0.1 s into the caller's line (nothing interrupted): void
    r = analyse(
        _result("barge_in", ("Tell me a story.", "What is eight?"), ("eight",)),
        _audio((1.0, 2.1), (4.0, 5.0)),
        [events[0], events[2], events[3]],
        [(0.0, 0.8), (2.0, 3.0)],
        pause_at=None,
        trigger=2.0,
        end=6.0,
        answer_timeout=20,
    )
    assert r.void and r.stop_ms is None and r.stopped is None and r.right


def test_analyse_counts_a_backchannel_that_paused_the_agent_as_a_false_cutoff() -> None:
    spoken = [(0.0, 0.8), (2.0, 2.4)]
    kept = analyse(
        _result("backchannel", ("Tell me a story.", "Okay.")),
        _audio((1.0, 8.0)),
        [],
        spoken,
        pause_at=None,
        trigger=2.0,
        end=9.0,
        answer_timeout=20,
    )
    assert kept.false_cutoff is False and kept.missed_resume is False
    paused = analyse(
        _result("backchannel", ("Tell me a story.", "Okay.")),
        _audio((1.0, 2.5), (3.5, 8.0)),  # silent 1 s after the "okay", then on
        [],
        spoken,
        pause_at=None,
        trigger=2.0,
        end=9.0,
        answer_timeout=20,
    )
    assert paused.false_cutoff is True and paused.missed_resume is False
    answered = analyse(  # the reply ended whole at 2.5 s, then the agent answered the "okay"
        _result("backchannel", ("Tell me a story.", "Okay.")),
        _audio((1.0, 2.5), (3.5, 8.0)),
        [{"type": "transcript", "role": "agent", "text": "Once upon a time.", "_at": 2.7}],
        spoken,
        pause_at=None,
        trigger=2.0,
        end=9.0,
        answer_timeout=20,
    )
    assert answered.false_cutoff is False
    stopped = analyse(
        _result("backchannel", ("Tell me a story.", "Okay.")),
        _audio((1.0, 2.5)),
        [{"type": "transcript", "role": "agent", "text": "Once", "interrupted": True, "_at": 3}],
        spoken,
        pause_at=None,
        trigger=2.0,
        end=9.0,
        answer_timeout=20,
    )
    assert stopped.false_cutoff is True and stopped.missed_resume is True
    between = analyse(  # said in the 0.5 s pause between two sentences: it was speaking
        _result("backchannel", ("Tell me a story.", "Okay.")),
        _audio((1.0, 1.5), (2.1, 8.0)),
        [],
        spoken,
        pause_at=None,
        trigger=2.0,
        end=9.0,
        answer_timeout=20,
    )
    assert not between.void and between.false_cutoff is False
    ended = analyse(  # the answer was over (0.9 s) before the backchannel: nothing to cut
        _result("backchannel", ("Tell me a story.", "Okay.")),
        _audio((1.0, 1.1)),
        [],
        spoken,
        pause_at=None,
        trigger=2.0,
        end=9.0,
        answer_timeout=20,
    )
    assert ended.void and ended.false_cutoff is None


def test_analyse_flags_a_turn_ended_inside_the_pause() -> None:
    spoken = [(0.0, 3.0)]  # the line, with its pause at 1.0-1.6 s
    on_time = analyse(
        _result("pause", ("What is the capital of France?",), ("paris",)),
        _audio((4.0, 5.0)),
        [{"type": "agent_state", "state": "thinking", "_at": 3.4}],
        spoken,
        pause_at=1.0,
        trigger=None,
        end=6.0,
        answer_timeout=20,
    )
    assert on_time.premature is False and on_time.v2v_ms == pytest.approx(1000, abs=1)
    early = analyse(
        _result("pause", ("What is the capital of France?",), ("paris",)),
        _audio((4.0, 5.0)),
        [{"type": "agent_state", "state": "thinking", "_at": 1.5}],
        spoken,
        pause_at=1.0,
        trigger=None,
        end=6.0,
        answer_timeout=20,
    )
    assert early.premature is True
    committed = analyse(  # a user turn committed in the pause, its reply dropped before thinking
        _result("pause", ("What is the capital of France?",), ("paris",)),
        _audio((4.0, 5.0)),
        [{"type": "metrics", "role": "user", "end_of_turn_delay": 0.3, "_at": 1.55}],
        spoken,
        pause_at=1.0,
        trigger=None,
        end=6.0,
        answer_timeout=20,
    )
    assert committed.premature is True
    summary = summarise([on_time, early])
    assert summary["premature_by_pause_ms"] == {"600": {"premature": 1, "pauses": 2}}
    assert summary["checked_answers"] == 2 and summary["right_answers"] == 0
    assert summary["wer"] == 1.0  # nothing heard
    assert math.isnan(summary["barge_in_stop_ms"]["p50"])


def test_the_wait_after_a_finished_sentence_is_the_engine_end_of_turn_delay() -> None:
    def question(*metrics: tuple[float, float]) -> EventResult:
        return analyse(
            _result("question", ("What is the capital of France?",), ("paris",)),
            _audio((3.0, 4.0)),
            [
                {"type": "metrics", "role": "user", "end_of_turn_delay": d, "_at": at}
                for d, at in metrics
            ]
            + [{"type": "metrics", "role": "agent", "end_of_turn_delay": 9.0, "_at": 3.1}],
            [(0.0, 2.0)],
            pause_at=None,
            trigger=None,
            end=5.0,
            answer_timeout=20,
        )

    quick, slow, none = question((0.2, 2.3)), question((0.5, 2.6)), question()
    assert quick.turn_wait_ms == pytest.approx(200) and slow.turn_wait_ms == pytest.approx(500)
    assert none.turn_wait_ms is None
    waits = summarise([quick, slow, none])["turn_wait_ms"]
    assert waits["n"] == 2 and waits["mean"] == pytest.approx(350)
    assert math.isnan(summarise([none])["turn_wait_ms"]["mean"])


def test_voices_are_named_with_an_optional_noise_suffix() -> None:
    assert parse_voice("piper")[2] is None
    assert parse_voice("espeak-gb+noise")[0] == "espeak" and parse_voice("hibari+noise")[2]
    with pytest.raises(ConfigError, match="unknown voice"):
        parse_voice("nobody")


# --- the real stack -------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_bench_conversation_smoke_run_measures_each_kind_through_the_real_stack(
    tmp_path: Path,
) -> None:
    proc, data = run_bench(tmp_path, "conversation", "--smoke", "--voices", "piper", timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "thinnest bench conversation" in proc.stdout
    assert data["errors"] == [], data["errors"]
    events = {e["kind"]: e for e in data["events"]}
    assert set(events) == {"pause", "barge_in", "backchannel"}
    assert {e["transport"] for e in data["events"]} == {"websocket", "webrtc"}
    s = data["summary"]
    assert s["events"] == 3
    assert 0.0 <= s["wer"] <= 1.0 and s["wer_words"] > 10
    assert s["checked_answers"] == 2 and 0 <= s["right_answers"] <= 2
    assert events["pause"]["premature"] in (True, False)
    assert s["premature_by_pause_ms"]["600"]["pauses"] == 1
    assert 0 < s["v2v_ms"]["p50"] < 20000
    barge = events["barge_in"]
    if barge["void"]:
        # The 0.5B model can answer a long request in one short sentence, over before the
        # caller's question (CI: "This is a beach.", 0.8 s): then there was nothing to stop,
        # and its reply ended whole.
        assert not any(
            e.get("interrupted") for e in barge["engine_events"] if e.get("type") == "transcript"
        ), barge
    else:
        if barge["stopped"]:
            assert 0 <= barge["stop_ms"] < 5000
            assert s["barge_in_stop_ms"]["n"] == 1
        assert barge["missed_resume"] in (True, False)
    backchannel = events["backchannel"]
    assert backchannel["void"] or backchannel["false_cutoff"] in (True, False)
    assert 0 <= s["false_cutoffs"] <= s["backchannels"] <= 1
    assert 0 <= s["missed_resumes"] <= s["resumable"] <= 2


@pytest.mark.integration
def test_bench_conversation_refuses_an_unknown_setting_or_a_bad_agent(tmp_path: Path) -> None:
    from tests._cli import run_thinnest

    for args, says in [
        (("--set", "bogus=1"), "expected NAME=VALUE"),
        (("--set", "interruption_min_duration=0"), "greater than or equal to 0.05"),
        (("--agent", "[1]"), "must be a JSON object"),
        (("--agent", "{"), "not JSON"),
    ]:
        proc = run_thinnest(tmp_path, "bench", "conversation", *args, timeout=60)
        assert proc.returncode == 2, (args, proc.stderr)
        assert says in " ".join(proc.stderr.replace("│", " ").split()), (args, proc.stderr)
        assert "Traceback" not in proc.stderr
