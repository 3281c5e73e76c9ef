"""Where an observation's JPEG lives in the object store: one tar pack per batch.

An ingest batch's images of one deployment and capture day go into one object,
``features/<deployment>/<yyyy-mm-dd>/<pack>.tar``: a plain (ustar) tar whose members are
``<observation_id>.jpg``, so ``tar tf`` lists a pack and ``tar xf`` unpacks it. A row's
image key is that object's key with the member's bytes as a fragment,
``<pack key>#<offset>+<length>``, so one image is read with one ranged read and no index.

Why packs and not an object per image: at a fleet's rate an object per frame is a file
system operation (open, write, close, rename; 0.05–0.6 CPU ms on ext4) or an S3 PUT request
(billed per request) per frame; a pack is one per batch. Keys without a fragment (images
stored one per object before packs) are still read whole.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from edgeloop.platform.errors import NotFound, Unavailable
from edgeloop.platform.objectstore import ObjectStore

PACK_CONTENT_TYPE = "application/x-tar"
_BLOCK = tarfile.BLOCKSIZE


@dataclass(frozen=True, slots=True)
class PackMember:
    """One image going into a pack."""

    observation_id: str
    jpeg: bytes
    mtime: float
    """Capture time (seconds since the epoch), the member's modification time."""


def pack_key(deployment: str, day: date, observation_ids: Sequence[str]) -> str:
    """``features/<deployment>/<yyyy-mm-dd>/<pack>.tar`` for a pack of these observations.

    The name is a digest of the ids, so a retried batch writes the same pack again instead
    of leaving its first copy behind unreferenced.
    """
    digest = hashlib.blake2b("\n".join(observation_ids).encode(), digest_size=16).hexdigest()
    # date.isoformat() is yyyy-mm-dd as %Y-%m-%d is, without strftime's cost
    return f"features/{deployment}/{day.isoformat()}/{digest}.tar"


def member_key(pack: str, offset: int, length: int) -> str:
    """The image key of the bytes ``[offset, offset + length)`` of object ``pack``."""
    return f"{pack}#{offset}+{length}"


@dataclass(frozen=True, slots=True)
class ImageLocation:
    """An image key taken apart: its object, and its byte range when it is in a pack."""

    object_key: str
    offset: int | None = None
    length: int | None = None


def locate(image_key: str) -> ImageLocation:
    """The object and byte range an image key names (:class:`ValueError` if malformed)."""
    object_key, hash_, fragment = image_key.partition("#")
    if not hash_:
        return ImageLocation(object_key)
    offset, plus, length = fragment.partition("+")
    if not (plus and offset.isdigit() and length.isdigit()):
        raise ValueError(f"image key {image_key!r}: expected <object>#<offset>+<length>")
    return ImageLocation(object_key, int(offset), int(length))


def build_pack(members: Sequence[PackMember]) -> tuple[memoryview, list[tuple[int, int]]]:
    """A ustar archive of ``members`` and each member's ``(offset, length)`` in it."""
    buffer = io.BytesIO()
    ranges = []
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(f"{member.observation_id}.jpg")
            info.size, info.mtime, info.mode = len(member.jpeg), int(member.mtime), 0o644
            tar.addfile(info, io.BytesIO(member.jpeg))
            # addfile leaves tar.offset after the data and its padding to a whole block
            padded = -(-info.size // _BLOCK) * _BLOCK
            ranges.append((tar.offset - padded, info.size))
    return buffer.getbuffer(), ranges


def write_pack(store: ObjectStore, deployment: str, day: date,
               members: Sequence[PackMember]) -> list[str]:
    """Store ``members`` as one pack; their image keys, in order.

    A local disk that cannot take the pack (full, read-only) is reported as
    :class:`Unavailable`: the batch is not the observations' fault and is retried.
    """
    key = pack_key(deployment, day, [m.observation_id for m in members])
    data, ranges = build_pack(members)
    try:
        store.put(key, data, content_type=PACK_CONTENT_TYPE)
    except OSError as exc:
        raise Unavailable(f"cannot write images to {store.describe()}: {exc}") from exc
    return [member_key(key, offset, length) for offset, length in ranges]


def read_image(store: ObjectStore, image_key: str) -> bytes:
    """The JPEG an image key names: a pack member's byte range, or a whole object."""
    where = locate(image_key)
    if where.offset is None or where.length is None:
        return store.get(where.object_key)
    data = store.get_range(where.object_key, where.offset, where.length)
    if len(data) != where.length:
        raise NotFound(f"object {where.object_key} ends before the image at "
                       f"{where.offset}+{where.length}")
    return data
