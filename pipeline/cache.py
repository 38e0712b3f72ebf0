"""A disk cache for processed audio and finished outputs (diskcache: SQLite-indexed, safe across
threads and processes, survives restarts, bounded by size with least-recently-used eviction).

Values are raw bytes (a JSON header + samples, or a finished file), never pickles.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import diskcache
import numpy as np

from pipeline.stages import Stage

Audio = np.ndarray


def audio_digest(audio: Audio, sample_rate: int) -> str:
    digest = hashlib.sha256()
    samples = np.ascontiguousarray(audio, dtype=np.float32)
    digest.update(("%s|%d|" % (samples.shape, sample_rate)).encode())
    digest.update(samples.data)
    return digest.hexdigest()


def key_of(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _pack(audio: Audio, sample_rate: int) -> bytes:
    samples = np.ascontiguousarray(audio, dtype=np.float32)
    header = json.dumps({"shape": list(samples.shape), "sample_rate": sample_rate}).encode()
    return struct.pack("<I", len(header)) + header + samples.tobytes()


def _unpack(blob: bytes) -> Tuple[Audio, int]:
    (length,) = struct.unpack_from("<I", blob)
    header = json.loads(blob[4 : 4 + length])
    samples = np.frombuffer(blob, dtype=np.float32, offset=4 + length).reshape(header["shape"])
    return samples.copy(), int(header["sample_rate"])


class AudioCache:
    def __init__(self, directory: Path, size_limit_bytes: int = 2 << 30) -> None:
        self.cache = diskcache.Cache(
            str(directory), size_limit=size_limit_bytes, eviction_policy="least-recently-used", disk_min_file_size=1 << 16
        )
        self.hits = 0
        self.misses = 0

    def apply(self, stage: Stage, audio: Audio, sample_rate: int) -> Tuple[Audio, int]:
        """``stage.apply`` unless the same stage already ran on the same audio (then no work is done)."""
        key = key_of("stage", stage.to_dict(), audio_digest(audio, sample_rate))
        blob = self.cache.get(key)
        if isinstance(blob, bytes):
            self.hits += 1
            return _unpack(blob)
        self.misses += 1
        out, rate = stage.apply(audio, sample_rate)
        self.cache.set(key, _pack(out, rate))
        return out, rate

    def get_output(self, key: str) -> Optional[Tuple[bytes, Dict[str, Any]]]:
        blob = self.cache.get("output:" + key)
        if not isinstance(blob, bytes):
            self.misses += 1
            return None
        self.hits += 1
        (length,) = struct.unpack_from("<I", blob)
        return blob[4 + length :], json.loads(blob[4 : 4 + length])

    def put_output(self, key: str, data: bytes, info: Dict[str, Any]) -> None:
        header = json.dumps(info).encode()
        self.cache.set("output:" + key, struct.pack("<I", len(header)) + header + data)

    def volume_bytes(self) -> int:
        return int(self.cache.volume())

    def close(self) -> None:
        self.cache.close()
