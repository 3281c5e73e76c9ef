"""Expired image days: which folders go, and a store that fails is only a warning."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path

import pytest
from edgeloop.features.image_retention import expired_days
from edgeloop.features.retention import Retention, RetentionPass
from edgeloop.platform.objectstore import LocalFolderStore, S3Store
from edgeloop.testing import free_port

TODAY = date(2026, 12, 7)


def test_only_day_folders_past_retention_and_margin_expire(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path)
    for deployment, days_ago in (("a", 4), ("a", 5), ("a", 6), ("b", 30)):
        day = (TODAY - timedelta(days=days_ago)).isoformat()
        store.put(f"features/{deployment}/{day}/p.tar", b"pack")
    store.put("features/a/notes/readme.txt", b"not a day")  # not ours to judge
    store.put("trainer/sweeps/s1/2026-01-01/arrays.npz", b"not an image")

    # retention 3 days + 2 of margin: the days before TODAY - 5 go
    assert expired_days(store, 3, TODAY) == [
        f"features/a/{(TODAY - timedelta(days=6)).isoformat()}/",
        f"features/b/{(TODAY - timedelta(days=30)).isoformat()}/"]


async def test_a_store_that_fails_is_a_warning_and_the_next_pass_tries_again(
        caplog: pytest.LogCaptureFixture) -> None:
    dead = S3Store(f"127.0.0.1:{free_port()}", "k", "s", "bucket")
    with caplog.at_level(logging.WARNING, logger="edgeloop.features.retention"):
        assert await Retention(dead, 3, interval_s=60).sweep_once() == RetentionPass()
    assert "expired images not deleted; trying again in 60 s" in caplog.text
