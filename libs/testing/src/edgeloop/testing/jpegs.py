"""Broken JPEGs for tests of what refuses them."""

from __future__ import annotations


def without_quantization_tables(jpeg: bytes) -> bytes:
    """``jpeg`` with its DQT segments left out: its header still reads (size, components),
    but it cannot decode (libjpeg refuses a component whose quantization table is not
    defined). The kind of frame only a full decode finds out."""
    kept, at = bytearray(jpeg[:2]), 2
    while jpeg[at + 1] != 0xDA:  # segment by segment up to the start of scan
        length = int.from_bytes(jpeg[at + 2:at + 4], "big")
        if jpeg[at + 1] != 0xDB:
            kept += jpeg[at:at + 2 + length]
        at += 2 + length
    return bytes(kept + jpeg[at:])
