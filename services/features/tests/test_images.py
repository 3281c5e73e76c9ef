"""Image packs: one tar per batch, a member's bytes named in its key."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from datetime import date
from pathlib import Path

import pytest
from edgeloop.features.images import (
    PackMember,
    build_pack,
    locate,
    member_key,
    pack_key,
    read_image,
    write_pack,
)
from edgeloop.platform.errors import NotFound, Unavailable
from edgeloop.platform.objectstore import LocalFolderStore

DAY = date(2026, 3, 1)


def _members(sizes: list[int]) -> list[PackMember]:
    # sizes around the tar block (512) so the padding between members is exercised
    return [PackMember(f"00000000-0000-4000-8000-{i:012d}", os.urandom(size), 1_772_366_400 + i)
            for i, size in enumerate(sizes)]


def test_each_member_is_read_back_by_its_key(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path)
    members = _members([1, 511, 512, 513, 12_600, 0])
    keys = write_pack(store, "parking", DAY, members)
    assert len({locate(k).object_key for k in keys}) == 1
    assert [read_image(store, k) for k in keys] == [m.jpeg for m in members]


def test_a_pack_is_a_plain_tar_of_observation_jpegs(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path)
    members = _members([700, 30])
    keys = write_pack(store, "parking", DAY, members)
    pack = tmp_path / locate(keys[0]).object_key
    assert pack.parent == tmp_path / "features" / "parking" / "2026-03-01"
    listing = subprocess.run(["tar", "tvf", str(pack)], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    assert [line.split()[-1] for line in listing] == [f"{m.observation_id}.jpg" for m in members]
    with tarfile.open(pack) as tar:
        info = tar.getmember(f"{members[1].observation_id}.jpg")
        assert info.mtime == int(members[1].mtime)
        assert tar.extractfile(info).read() == members[1].jpeg


def test_the_pack_name_follows_its_observations() -> None:
    ids = ["a", "b"]
    assert pack_key("parking", DAY, ids) == pack_key("parking", DAY, list(ids))
    assert pack_key("parking", DAY, ids) != pack_key("parking", DAY, ["a", "c"])
    assert pack_key("parking", DAY, ids).startswith("features/parking/2026-03-01/")


def test_ranges_point_at_the_data_not_the_headers() -> None:
    members = _members([5, 600])
    data, ranges = build_pack(members)
    assert [bytes(data[o:o + n]) for o, n in ranges] == [m.jpeg for m in members]
    assert ranges[0][0] == 512 and ranges[1][0] == 512 + 512 + 512  # header, padded data, header
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as tar:
        assert [m.offset_data for m in tar.getmembers()] == [o for o, _ in ranges]


@pytest.mark.parametrize("key, where", [
    ("features/a/2026-03-01/x.jpg", ("features/a/2026-03-01/x.jpg", None, None)),
    ("features/a/2026-03-01/p.tar#1536+12600", ("features/a/2026-03-01/p.tar", 1536, 12600)),
])
def test_keys_are_taken_apart(key: str, where: tuple) -> None:
    found = locate(key)
    assert (found.object_key, found.offset, found.length) == where
    if found.offset is not None:
        assert member_key(found.object_key, found.offset, found.length) == key


@pytest.mark.parametrize("key", ["p.tar#", "p.tar#12", "p.tar#a+1", "p.tar#1+-2"])
def test_malformed_fragments_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="offset"):
        locate(key)


def test_a_pack_cut_short_is_a_missing_image(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path)
    keys = write_pack(store, "parking", DAY, _members([100, 3000]))
    pack = tmp_path / locate(keys[1]).object_key
    pack.write_bytes(pack.read_bytes()[:locate(keys[1]).offset + 10])
    assert len(read_image(store, keys[0])) == 100
    with pytest.raises(NotFound, match="ends before"):
        read_image(store, keys[1])


def test_a_disk_that_refuses_the_pack_is_unavailable(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path)
    (tmp_path / "features").write_bytes(b"")  # a file where the pack's folder would go
    with pytest.raises(Unavailable, match="cannot write images"):
        write_pack(store, "parking", DAY, _members([10]))
