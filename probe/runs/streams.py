"""Random streams keyed by identity, never by position.

Every stream of a run (attack, oracle noise, clean label, p_adv, PREDICT, CERTIFY) is
``default_rng([seed, *image key, *attack key, kind])``: the image's key is a hash of its
canonical array, the attack's a hash of its name and parameters. A result is therefore
the same whatever else runs beside it and in whatever order.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

CLEAN, ATTACK, ORACLE, PADV, PADV8, CERTIFY, PREDICT = 10, 11, 12, 13, 14, 15, 16


def key_words(data: bytes | str) -> list[int]:
    """Four 32-bit words of the SHA-256 of ``data``: a stream key from an identity."""
    raw = data.encode() if isinstance(data, str) else data
    digest = hashlib.sha256(raw).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def image_key(x: np.ndarray) -> list[int]:
    """The identity of an image: its canonical float32 array."""
    return key_words(np.ascontiguousarray(x, dtype=np.float32).tobytes())


def attack_key(attack) -> list[int]:
    """The identity of an attack: its name and every parameter (``attack.identity()``: those added
    later count only away from their earlier value)."""
    return key_words(json.dumps({"name": attack.name, **attack.identity()}, sort_keys=True, default=str))


def stream(seed: int, *keys: list[int], kind: int) -> np.random.Generator:
    """The stream of one ``kind`` for the identities ``keys``."""
    return np.random.default_rng([seed, *(w for key in keys for w in key), kind])
