"""The durable spool: order, acknowledgement, capacity, segments and crash recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from edgeloop.gateway.spool import Spool, count_records


def records(first: int, count: int, size: int = 100) -> list[bytes]:
    return [f"{i:08d}".encode() + b"x" * size for i in range(first, first + count)]


def read_all(spool: Spool) -> list[bytes]:
    got, _ = spool.read(spool.ack_position, 1_000_000)
    return got


def test_records_come_back_in_order_until_acknowledged(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(records(0, 5))
    spool.append(records(5, 5))
    first, middle = spool.read(spool.ack_position, 3)
    assert first == records(0, 3)
    spool.ack(middle)
    assert read_all(spool) == records(3, 7)
    _, end = spool.read(spool.ack_position, 100)
    spool.ack(end)
    assert read_all(spool) == [] and spool.backlog_bytes == 0


def test_reopening_replays_from_the_ack(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(records(0, 10))
    _, position = spool.read(spool.ack_position, 4)
    spool.ack(position)
    reopened = Spool(tmp_path, max_bytes=1 << 20)
    assert read_all(reopened) == records(4, 6)
    assert reopened.ack_position == position


def test_ack_never_moves_backwards(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(records(0, 10))
    _, early = spool.read(spool.ack_position, 2)
    _, late = spool.read(spool.ack_position, 8)
    spool.ack(late)
    spool.ack(early)
    assert spool.ack_position == late and read_all(spool) == records(8, 2)


def test_segments_roll_and_spent_ones_are_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1000)
    for batch in range(10):
        spool.append(records(batch * 5, 5))
    segments = sorted(tmp_path.glob("*.seg"))
    assert len(segments) > 3
    assert read_all(spool) == records(0, 50)
    _, position = spool.read(spool.ack_position, 40)
    spool.ack(position)
    assert len(sorted(tmp_path.glob("*.seg"))) < len(segments)
    assert read_all(Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1000)) == records(40, 10)


def test_capacity_counts_backlog_and_reservations(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=2000)
    assert spool.reserve(1500)
    assert not spool.reserve(600)  # 1500 reserved + 600 > 2000
    spool.append(records(0, 10, size=92), reserved=1500)  # 10 x (8 header + 8 + 92) = 1080 bytes
    assert spool.backlog_bytes == 1080
    assert spool.reserve(900) and not spool.reserve(100)
    spool.unreserve(900)
    _, end = spool.read(spool.ack_position, 100)
    spool.ack(end)
    assert spool.reserve(1900)


def test_a_torn_tail_is_cut_off_on_open(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(records(0, 3))
    (segment,) = tmp_path.glob("*.seg")
    good_size = segment.stat().st_size
    with segment.open("ab") as out:  # a batch cut in the middle of its second record
        out.write(b"\x80\x00\x00\x00\x12\x34\x56\x78" + b"partial")
    reopened = Spool(tmp_path, max_bytes=1 << 20)
    assert read_all(reopened) == records(0, 3)
    assert segment.stat().st_size == good_size
    reopened.append(records(3, 1))
    assert read_all(Spool(tmp_path, max_bytes=1 << 20)) == records(0, 4)


def test_count_records_reads_whole_records_of_every_segment_without_opening(
        tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1000)
    for batch in range(4):
        spool.append(records(batch * 5, 5))
    assert len(list(tmp_path.glob("*.seg"))) > 1
    assert count_records(tmp_path) == 20
    last = sorted(tmp_path.glob("*.seg"))[-1]
    size = last.stat().st_size
    with last.open("ab") as out:  # a record being written: counted once it is whole
        out.write(b"\x80\x00\x00\x00\x12\x34\x56\x78" + b"partial")
    assert count_records(tmp_path) == 20
    assert last.stat().st_size == size + 15, "counting leaves the files as they are"


WRITER = textwrap.dedent("""
    import sys
    from edgeloop.gateway.spool import Spool
    spool = Spool(sys.argv[1], max_bytes=1 << 30)
    n = 0
    while True:
        spool.append([f"{i:08d}".encode() + b"x" * 500 for i in range(n, n + 10)])
        n += 10
        print(n, flush=True)
""")


def test_kill_9_while_appending_loses_nothing_that_was_fsynced(tmp_path: Path) -> None:
    """A writer process killed with SIGKILL mid-stream: every batch it reported is replayed."""
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    confirmed = 0
    deadline = time.monotonic() + 30
    try:
        while confirmed < 2000 and time.monotonic() < deadline:
            confirmed = int(writer.stdout.readline())
    finally:  # the writer is killed on every path, also when its output is not a number
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    got = read_all(Spool(tmp_path, max_bytes=1 << 30))
    assert len(got) >= confirmed  # everything confirmed is there (maybe a later batch too)
    assert got == [f"{i:08d}".encode() + b"x" * 500 for i in range(len(got))]  # in order, whole
