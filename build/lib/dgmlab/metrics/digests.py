"""Short content hashes used as cache keys."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path, length: int = 12) -> str:
    """The first ``length`` hex digits of the file's SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def data_digest(split, length: int = 12) -> str:
    """A hash of a split's images and labels: the cache key for anything computed from them."""
    digest = hashlib.sha256(split.images.contiguous().numpy().tobytes())
    digest.update(split.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()[:length]
