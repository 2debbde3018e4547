"""A node's key material: the committed keys of its key store, addressed by SHA-256.

Alice's and Bob's copies of one BB84 key are separate files with their own key ids but
the same bits, hence the same SHA-256 and length: that pair is how the two KMEs name a
key file to each other. A KME serves only the keys labelled with its node's name
(``qhil run bb84`` labels each party's copy ``alice`` / ``bob``), so the two KMEs of a
single-process run can share one key directory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from qhil.records.errors import KeyNotFoundError, KeyStoreError
from qhil.records.keystore import KeyRef, KeyStore

log = logging.getLogger(__name__)

Chunk = tuple[str, int, int]  # (sha256, start bit, end bit) of one key file


@dataclass(frozen=True)
class KeyFile:
    sha256: str
    key_id: str
    length_bits: int


class Material:
    """The usable key files of one node, oldest first; headers cached by key id."""

    def __init__(self, key_dir: str | Path, node: str) -> None:
        self.store = KeyStore(key_dir)
        self.node = node
        self._refs: dict[str, KeyRef] = {}
        self._refused: set[str] = set()
        # the last few files' bits: a key is cut from one file after another, and loading
        # (SHA-256 check, unpacking) a whole file per request cost more than the request
        self._bits: dict[str, NDArray[np.uint8]] = {}

    def files(self) -> list[KeyFile]:
        """The committed key files labelled ``node`` now (new ones picked up on each call)."""
        names = {p.name.removesuffix(".qkey") for p in self.store.directory.glob("key-*.qkey")}
        for gone in set(self._refs) - names:
            del self._refs[gone]
        for key_id in names - set(self._refs):
            try:
                self._refs[key_id] = self.store.info(key_id)
            except KeyNotFoundError:  # deleted between the listing and the read
                continue
            except KeyStoreError as exc:  # loosened permissions, a damaged header
                if key_id not in self._refused:
                    self._refused.add(key_id)
                    log.warning("kme %s: key file not served: %s", self.node, exc)
        refs = sorted(
            (r for r in self._refs.values() if r.label == self.node),
            key=lambda r: (r.created_at, r.key_id),
        )
        by_sha: dict[str, KeyFile] = {}
        for ref in refs:  # the same key saved twice: one file serves, the other waits
            by_sha.setdefault(ref.sha256, KeyFile(ref.sha256, ref.key_id, ref.length_bits))
        return list(by_sha.values())

    def read(self, chunks: list[Chunk]) -> NDArray[np.uint8]:
        """The bits of ``chunks`` concatenated, read from this node's files."""
        index = {f.sha256: f for f in self.files()}
        parts = []
        for sha, start, end in chunks:
            if sha not in index:
                raise LookupError(f"no committed key with sha256 {sha[:16]}... at {self.node}")
            bits = self._load(index[sha].key_id)
            if not 0 <= start < end <= bits.size:
                raise LookupError(f"bits {start}..{end} outside key sha256 {sha[:16]}...")
            parts.append(bits[start:end])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)

    def _load(self, key_id: str) -> NDArray[np.uint8]:
        if key_id not in self._bits:
            if len(self._bits) >= 4:
                del self._bits[next(iter(self._bits))]
            self._bits[key_id] = self.store.load(key_id).bits
        return self._bits[key_id]

    def delete(self, sha256: str) -> None:
        for f in self.files():
            if f.sha256 == sha256:
                self._bits.pop(f.key_id, None)
                self.store.delete(f.key_id)


def available_bits(files: list[KeyFile], cursor: dict[str, int]) -> int:
    """Bits not yet handed out: each file's length past its cursor."""
    return sum(max(0, f.length_bits - cursor.get(f.sha256, 0)) for f in files)


def take_chunks(files: list[KeyFile], cursor: dict[str, int], nbits: int) -> list[Chunk] | None:
    """The next ``nbits`` past the cursors, oldest file first; None when there are fewer."""
    chunks: list[Chunk] = []
    need = nbits
    for f in files:
        start = cursor.get(f.sha256, 0)
        if need == 0:
            break
        if start >= f.length_bits:
            continue
        end = min(f.length_bits, start + need)
        chunks.append((f.sha256, start, end))
        need -= end - start
    return chunks if need == 0 else None


def keys_from_bits(bits: NDArray[np.uint8], number: int, size: int) -> list[bytes]:
    """``number`` keys of ``size`` bits (a multiple of 8) from consecutive bits."""
    packed = np.packbits(bits[: number * size].reshape(number, size), axis=1)
    return [row.tobytes() for row in packed]
