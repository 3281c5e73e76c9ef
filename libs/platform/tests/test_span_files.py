"""Span files as the services write them, read back as a frame's tree."""

from __future__ import annotations

import json
from pathlib import Path

from edgeloop.platform import span_files
from edgeloop.platform.span_files import read_spans, span_tree

FRAME = "ab" * 16
BATCH = "cd" * 16
OTHER = "ef" * 16


def _line(trace: str, span: str, parent: str | None, name: str, service: str, start_ms: int,
          links: tuple[str, ...] = ()) -> str:
    return json.dumps({
        "name": name, "context": {"trace_id": f"0x{trace}", "span_id": f"0x{span}"},
        "parent_id": f"0x{parent}" if parent else None,
        "start_time": f"2026-12-01T10:00:00.{start_ms:03d}000Z",
        "end_time": f"2026-12-01T10:00:00.{start_ms + 5:03d}000Z",
        "status": {"status_code": "OK"}, "attributes": {"seq": 1},
        "links": [{"context": {"trace_id": f"0x{t}", "span_id": "0x1"}} for t in links],
        "resource": {"attributes": {"service.name": service}}})


def _write(folder: Path) -> None:
    (folder / "edgeloop-gateway.jsonl").write_text("\n".join([
        _line(FRAME, "01", None, "Stream frame", "edgeloop-gateway", 0),
        _line(FRAME, "02", "01", "model_host.predict", "edgeloop-gateway", 1),
        _line(OTHER, "09", None, "another frame", "edgeloop-gateway", 2),
        "not json at all"]) + "\n")
    (folder / "edgeloop-features.1.jsonl").write_text("\n".join([
        _line(BATCH, "03", None, "Ingest", "edgeloop-features", 20, links=(FRAME,)),
        _line(BATCH, "04", "03", "INSERT", "edgeloop-features", 21)]) + "\n")


def test_a_frames_tree_has_its_spans_and_the_batches_that_link_to_it(tmp_path: Path) -> None:
    _write(tmp_path)
    roots = span_tree(tmp_path, f"0x{FRAME.upper()}")
    assert [(r.name, r.service) for r in roots] == [("Stream frame", "edgeloop-gateway"),
                                                    ("Ingest", "edgeloop-features")]
    assert [c.name for c in roots[0].children] == ["model_host.predict"]
    assert [c.name for c in roots[1].children] == ["INSERT"]
    assert roots[0].duration_ms == 5.0 and roots[0].attributes == {"seq": 1}


def test_reading_skips_bad_lines_and_filters_by_text(tmp_path: Path) -> None:
    _write(tmp_path)
    assert len(list(read_spans(tmp_path))) == 5
    assert [s.span_id for s in read_spans(tmp_path, OTHER)] == ["09"]
    assert list(read_spans(tmp_path / "missing")) == []
    assert span_tree(tmp_path, "") == []


def test_a_large_file_is_read_from_its_last_part(tmp_path: Path, monkeypatch) -> None:
    _write(tmp_path)
    gateway = (tmp_path / "edgeloop-gateway.jsonl").read_text().splitlines()
    # Room for the gateway file's last two lines and one byte of the line before them.
    monkeypatch.setattr(span_files, "MAX_FILE_BYTES", len(gateway[-2]) + len(gateway[-1]) + 3)
    names = {s.name for s in read_spans(tmp_path)}
    # A cut line is skipped, not misread: only whole recent lines of each file count.
    assert names == {"another frame", "INSERT"}
