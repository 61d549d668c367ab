"""Test doubles shared across test packages."""

import hashlib

import numpy as np


class FakeEncoder:
    """A sentence encoder stand-in: hashed bag of words, deterministic, no weights.

    Texts sharing words get similar unit vectors, good enough to rank by shared words.
    """

    def __init__(self, name: str = "fake", dim: int = 64, fingerprint: str = "fp-1"):
        self.name, self.dim, self.fingerprint = name, dim, fingerprint

    def encode(self, texts, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace(".", " ").replace(",", " ").split():
                seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
                out[i] += np.random.default_rng(seed).standard_normal(self.dim)
        return out / (np.linalg.norm(out, axis=1, keepdims=True) + 1e-12)
