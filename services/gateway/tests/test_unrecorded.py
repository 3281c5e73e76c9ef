"""Answers without a record are logged by the stretch, not by the frame.

A full spool frees room for a few frames with each batch features confirms, so recorded and
unrecorded answers alternate for as long as the overload lasts; one stretch must stay one
warning (an overload soak logged 1,689 of them in 4 minutes when every recorded frame ended
a stretch)."""

from __future__ import annotations

import logging

import pytest
from edgeloop.gateway.frames import UnrecordedAnswers
from edgeloop.testing import ManualClock


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "edgeloop.gateway.frames"]


def test_alternating_answers_are_one_stretch_until_a_quiet_period(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock(1_000.0)
    answers = UnrecordedAnswers(clock)
    caplog.set_level(logging.INFO, logger="edgeloop.gateway.frames")
    for seq in range(1, 101):  # a full spool: three of four frames unrecorded, for 50 s
        clock.now += 0.5
        answers.note(recording=seq % 4 == 0, seq=seq)
    assert answers.total == 75 and answers.since == 1_000.5
    assert len(_messages(caplog)) == 1 and "spool full" in _messages(caplog)[0]

    clock.now += 9.0  # recorded frames, not yet quiet for long enough
    answers.note(recording=True, seq=101)
    assert answers.since == 1_000.5 and len(_messages(caplog)) == 1
    clock.now += 1.0
    assert answers.since is None, "no frame unrecorded for QUIET_S"
    answers.note(recording=True, seq=102)
    assert _messages(caplog)[1] == "recording every frame again"
    ended = [r for r in caplog.records if r.getMessage() == "recording every frame again"][0]
    assert ended.answered_not_recorded == 75 and ended.for_s == 49.0

    clock.now += 1.0
    answers.note(recording=False, seq=103)
    assert answers.since == clock.now and answers.total == 76
    assert len(_messages(caplog)) == 3 and "spool full" in _messages(caplog)[2]


def test_a_stretch_that_ends_without_frames_is_counted_afresh(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock(1_000.0)
    answers = UnrecordedAnswers(clock)
    caplog.set_level(logging.INFO, logger="edgeloop.gateway.frames")
    answers.note(recording=False, seq=1)
    clock.now += 60  # the robots stopped; the next frame starts a new stretch
    answers.note(recording=False, seq=2)
    clock.now += 20
    answers.note(recording=True, seq=3)
    ended = [r for r in caplog.records if r.getMessage() == "recording every frame again"]
    assert [r.answered_not_recorded for r in ended] == [1]
    assert len([m for m in _messages(caplog) if "spool full" in m]) == 2
