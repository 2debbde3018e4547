"""Cascade error reconciliation as an explicit two-party protocol, vectorised over blocks.

Alice holds the reference key, Bob the noisy one. Bob drives: every message he
sends is a :class:`ParityQuery` (a pass index and a list of ranges in that pass's
shuffled order), and Alice answers with a :class:`ParityReply` holding her
parities of those ranges. Every bit of every reply is disclosed to Eve and
counted in ``leaked_bits``; nothing else reveals anything about Alice's key
(Bob's queries depend only on the error pattern).

Protocol (Brassard-Salvail Cascade with the parameter choices of Martinez-Mateo
et al., "Demystifying the information reconciliation protocol Cascade", QIC 15
(2015), and Yan et al.):

- The key is cut into frames (reconciled independently, but processed together
  so numpy sees many blocks at once). Each pass shuffles every frame with a
  permutation drawn from a public seed and cuts it into blocks of k_p bits.
- Bob asks for the parities of all blocks of the new pass. In passes after the
  first, Alice's frame parity is already known, so the last block of each frame
  is inferred, not asked.
- A block whose parities differ holds an odd number of errors. All odd blocks
  of one pass are bisected *in parallel* (one query per bisection level, for
  all blocks at once); each bisection finds and flips one error bit.
- Flipping a bit flips the parity of the block that contains it in every
  earlier pass (the cascade effect). Bob keeps going, always bisecting the odd
  blocks of the pass with the smallest blocks, until no block of any started
  pass is odd; then the next pass starts.
- Alice's parities never change, so every parity she ever disclosed is kept;
  a sub-block whose parity (or whose sibling's) is already known is not asked
  again (this matters when an earlier block is re-bisected).

Parities of ranges come from prefix XORs of each pass's shuffled key, so a
bisection level costs O(#blocks), and a round O(frame bits) to refresh Bob's
prefix; there is no Python loop over bits. Residual errors are possible (frame
error rate): verification (:mod:`qhil.numerics.qkd.verification`) catches them.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qhil.numerics.qkd.bits import BitArray, as_bits
from qhil.numerics.qkd.entropy import binary_entropy

IntArray = NDArray[np.int64]

# Rows of CascadeBob's array of bisections under way (see CascadeBob.__init__).
# The first _STATIC rows are those of the block (CascadeBob._g_static).
_PAS, _S, _E, _FRAME, _BASE, _PAR, _H, _PB, _KNOWN, _PS = range(10)
_STATIC, _ROWS = 5, 10

DEFAULT_PASSES = 16  # 13 two-block passes: each halves the chance a residual survives
_MIN_QBER = 1e-4


def default_block_sizes(
    qber: float, frame_bits: int, passes: int = DEFAULT_PASSES
) -> tuple[int, ...]:
    """Block sizes per pass from the QBER estimate.

    k1 = 2^ceil(log2(1/p) - 1/2) as in "option 8" of Martinez-Mateo et al.;
    k2 = max(4 k1, 128) and k3 = 4096, then n/2 (two blocks per frame) for the
    remaining passes (16 in all by default: at high QBER errors can survive the
    first passes and only these catch them, each with probability 1/2); each
    size is capped at n/2. k2 was chosen by simulation (benchmarks/postprocessing.py):
    against option 8's k2 = 2^ceil((log2(1/p) + 11.5) / 2) it leaks slightly less
    at 1-4 % and needs 2-5x fewer round trips (e.g. QBER 4 %, n 1e4: f 1.051 vs
    1.056, 680 vs 3460 queries per 20 frames).
    """
    if not 0 <= qber < 0.5:
        raise ValueError(f"qber: must lie in [0, 0.5) (got {qber!r})")
    if frame_bits < 2:
        raise ValueError(f"frame_bits: must be >= 2 (got {frame_bits})")
    if passes < 1:
        raise ValueError(f"passes: must be >= 1 (got {passes})")
    alpha = math.log2(1.0 / max(qber, _MIN_QBER)) - 0.5
    half = (frame_bits + 1) // 2
    k1 = 2 ** math.ceil(alpha)
    sizes = [k1, max(4 * k1, 128), 4096]
    sizes += [half] * max(0, passes - 3)
    return tuple(max(1, min(k, half)) for k in sizes[:passes])


@dataclass(frozen=True)
class CascadeSetup:
    """Public parameters both sides agree on before reconciling (Bob -> Alice or agreed).

    ``frame_bits`` is the frame length; a key of N bits is cut into frames of that
    length (the last one may be shorter).
    """

    key_bits: int
    frame_bits: int
    block_sizes: tuple[int, ...]
    shuffle_seed: int

    def __post_init__(self) -> None:
        if self.key_bits < 1:
            raise ValueError(f"CascadeSetup.key_bits: must be >= 1 (got {self.key_bits})")
        if self.frame_bits < 1:
            raise ValueError(f"CascadeSetup.frame_bits: must be >= 1 (got {self.frame_bits})")
        if not self.block_sizes or min(self.block_sizes) < 1:
            raise ValueError(
                f"CascadeSetup.block_sizes: need >= 1 pass, sizes >= 1 (got {self.block_sizes})"
            )
        if not 0 <= self.shuffle_seed < 2**63:
            raise ValueError(
                f"CascadeSetup.shuffle_seed: must be in [0, 2^63) (got {self.shuffle_seed})"
            )

    @classmethod
    def for_qber(
        cls,
        key_bits: int,
        qber: float,
        shuffle_seed: int,
        frame_bits: int | None = None,
        passes: int = DEFAULT_PASSES,
    ) -> CascadeSetup:
        """Setup with :func:`default_block_sizes` for the estimated QBER."""
        fb = min(frame_bits or key_bits, key_bits)
        return cls(key_bits, fb, default_block_sizes(qber, max(fb, 2), passes), shuffle_seed)


@dataclass(frozen=True)
class ParityQuery:
    """Bob -> Alice: your parities of positions [starts[i], ends[i]) of pass ``passes[i]``.

    Positions index a pass's shuffled order of the whole key (frames laid end to end).
    One query may mix passes: frames progress independently, each bisecting the odd
    blocks of its own pass with the smallest blocks.
    """

    passes: IntArray
    starts: IntArray
    ends: IntArray

    def encode(self) -> bytes:
        """Compact bytes for the classical channel."""
        n = int(self.starts.size)
        return (
            struct.pack("<I", n)
            + self.passes.astype("<u2").tobytes()
            + self.starts.astype("<i8").tobytes()
            + self.ends.astype("<i8").tobytes()
        )

    @classmethod
    def decode(cls, data: bytes) -> ParityQuery:
        (n,) = struct.unpack_from("<I", data)
        if len(data) != 4 + 18 * n:
            raise ValueError(f"ParityQuery: {len(data)} bytes do not hold {n} ranges")
        passes = np.frombuffer(data, dtype="<u2", count=n, offset=4).astype(np.int64)
        arr = np.frombuffer(data, dtype="<i8", offset=4 + 2 * n).astype(np.int64)
        return cls(passes, arr[:n], arr[n:])


@dataclass(frozen=True)
class ParityReply:
    """Alice -> Bob: one parity bit per queried range, packed."""

    count: int
    parities: bytes

    def bits(self) -> BitArray:
        return np.unpackbits(np.frombuffer(self.parities, dtype=np.uint8), count=self.count)

    def encode(self) -> bytes:
        return struct.pack("<I", self.count) + self.parities

    @classmethod
    def decode(cls, data: bytes) -> ParityReply:
        (count,) = struct.unpack_from("<I", data)
        if len(data) != 4 + (count + 7) // 8:
            raise ValueError(f"ParityReply: {len(data)} bytes do not hold {count} parities")
        return cls(count, data[4:])


def _concat_ranges(starts: IntArray, ends: IntArray) -> IntArray:
    """The integers of [starts[i], ends[i]) for every i, laid end to end."""
    lens = ends - starts
    offs = np.cumsum(lens) - lens
    return np.repeat(starts - offs, lens) + np.arange(int(lens.sum()), dtype=np.int64)


def _inverse_permutation(perm: NDArray[np.int32]) -> IntArray:
    """inv[perm[i]] = i, in one scatter (argsort would sort)."""
    inv = np.empty(perm.size, dtype=np.int64)
    inv[perm] = np.arange(perm.size, dtype=np.int64)
    return inv


def _bits_at(packed: BitArray, index: IntArray) -> IntArray:
    """Bits ``index`` of a packed bit string (numpy's big-endian bit order), as 0/1."""
    return ((packed[index >> 3] >> (7 - (index & 7))) & 1).astype(np.int64)


# The low k bytes of a little-endian 64-bit word, k = 0..7.
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(8)], dtype=np.uint64)


class _PackedCount:
    """Running count of the ones of a packed bit string (numpy's big-endian bit order).

    Counted per 64-bit word (a cumulative sum over n/64 words); a count at x adds the
    ones of the whole bytes of x's word before x's byte and the top bits of that byte.
    """

    def __init__(self, packed: BitArray, n_bits: int) -> None:
        self.packed = packed
        buf = np.zeros(8 * (packed.size // 8 + 1), dtype=np.uint8)  # one spare zero word
        buf[: packed.size] = packed
        self._bytes = buf
        self._words = buf.view("<u8")
        self._before = np.zeros(self._words.size + 1, dtype=np.int64)  # ones before a word
        np.cumsum(np.bitwise_count(self._words), out=self._before[1:])
        self.total = int(self.ones_before(np.array([n_bits]))[0])  # not the padding bits

    def ones_before(self, x: IntArray) -> IntArray:
        """Number of ones among the first x bits."""
        word, byte, rem = x >> 6, x >> 3, x & 7
        whole = np.bitwise_count(self._words[word] & _LOW_BYTES[byte & 7]).astype(np.int64)
        top = np.bitwise_count(self._bytes[byte] >> (8 - rem)).astype(np.int64)
        return self._before[word] + whole + np.where(rem > 0, top, 0)


class _Layout:
    """Frames, shuffles and blocks of every pass; identical on both sides.

    Positions of a pass index its shuffled order of the whole key. Blocks are
    contiguous position ranges inside one frame, listed in increasing start
    order and tiling the positions; ``block_frame`` names each block's frame and
    ``inferred`` marks the one block per frame whose parity follows from the
    others once the frame parity is known.

    The order (position -> key index) and its inverse are built only when needed:
    a halving pass's block parities come straight from its split mask, and most
    halving passes are never bisected.
    """

    def __init__(self, setup: CascadeSetup) -> None:
        self.setup = setup
        n_total = setup.key_bits
        fb = setup.frame_bits
        self.frame_starts = np.arange(0, n_total, fb, dtype=np.int64)
        self.frame_lens = np.minimum(fb, n_total - self.frame_starts)
        self.n_frames = int(self.frame_starts.size)
        self._rng = np.random.default_rng(setup.shuffle_seed)
        self.block_starts: list[IntArray] = []  # pass -> block -> first position
        self.block_ends: list[IntArray] = []
        self.block_frame: list[IntArray] = []
        self.inferred: list[NDArray[np.bool_]] = []
        self._orders: list[NDArray[np.int32] | None] = []  # halving pass -> position -> key
        self._filled: list[NDArray[np.bool_] | None] = []  # halving pass -> frames filled
        # Shuffled passes: one permutation shared by all full frames and one for a
        # shorter last frame (each frame's is uniform and independent of its errors,
        # which is all Cascade needs), and their inverses once needed.
        self._perms: list[tuple[NDArray[np.int32], NDArray[np.int32]] | None] = []
        self._inverse: list[tuple[IntArray, IntArray] | None] = []
        # Halving passes: the packed split mask (1: first half), its running count and,
        # per frame, the block index of its A half and of its B half (-1: empty half).
        self._split: list[tuple[BitArray, _PackedCount, IntArray] | None] = []

    @property
    def n_passes(self) -> int:
        return len(self.block_starts)

    def build_pass(self, p: int) -> None:
        """Create pass p (passes are built in order, so the seed stream is reproducible).

        Passes whose blocks cover half a frame or more only need a random split
        of each frame into two halves (bisection works in any fixed order), which
        costs a random bit per key bit instead of a full permutation.
        """
        assert p == self.n_passes
        k = self.setup.block_sizes[p]
        if 2 * k >= int(self.frame_lens.max()):
            self._build_halving_pass()
        else:
            self._build_shuffled_pass(k)

    def is_halving(self, p: int) -> bool:
        return self._split[p] is not None

    def halving_split(self, p: int) -> tuple[BitArray, IntArray]:
        """A halving pass's packed split mask and, per half (A, B) and frame, its block
        (-1: none)."""
        split = self._split[p]
        assert split is not None
        return split[0], split[2]

    def keys_at(self, p: int, positions: IntArray) -> IntArray:
        """Key index of the given positions of pass p.

        A halving pass's order is filled frame by frame, for the frames asked about
        (a pass is bisected in a few frames only).
        """
        split = self._split[p]
        if split is None:  # from the permutations: no position -> key array to build
            perms = self._perms[p]
            assert perms is not None
            perm, tail = perms
            fb = self.setup.frame_bits
            frame = positions // fb
            local = positions - frame * fb
            if not tail.size:
                return frame * fb + perm[local]
            n_full = self.n_frames - 1
            in_tail = frame == n_full
            return np.where(
                in_tail,
                n_full * fb + tail[np.where(in_tail, local, 0)],
                frame * fb + (perm[np.where(in_tail, 0, local)] if perm.size else 0),
            )
        order = self._orders[p]
        if order is None:
            order = self._orders[p] = np.empty(self.setup.key_bits, dtype=np.int32)
            self._filled[p] = np.zeros(self.n_frames, dtype=bool)
        filled = self._filled[p]
        assert filled is not None
        frames = self.block_frame[p][self.block_of(p, positions)]
        todo = frames[~filled[frames]]
        if todo.size:
            self._fill_halving_order(p, np.unique(todo), order)
            filled[todo] = True
        return order[positions].astype(np.int64)

    def block_of(self, p: int, positions: IntArray) -> IntArray:
        return np.searchsorted(self.block_starts[p], positions, side="right") - 1

    def _fill_halving_order(self, p: int, frames: IntArray, order: NDArray[np.int32]) -> None:
        split = self._split[p]
        assert split is not None
        raw, count, _ = split
        fs, fl = self.frame_starts[frames], self.frame_lens[frames]
        keys = _concat_ranges(fs, fs + fl)
        a = _bits_at(raw, keys).astype(bool)
        a_start, a_end = count.ones_before(fs), count.ones_before(fs + fl)
        n_a = count.total
        order[_concat_ranges(a_start, a_end)] = keys[a]
        order[_concat_ranges(n_a + fs - a_start, n_a + fs + fl - a_end)] = keys[~a]

    def shuffled_key(self, p: int, key: BitArray) -> BitArray:
        """The key's bits in the order of pass p (a shuffled pass)."""
        perms = self._perms[p]
        assert perms is not None
        perm, tail = perms
        fb = self.setup.frame_bits
        n_full = self.n_frames - (tail.size > 0)
        full = np.take(key[: n_full * fb].reshape(n_full, fb), perm, axis=1).ravel()
        return np.concatenate([full, key[n_full * fb :][tail]]) if tail.size else full

    def positions(self, p: int, key_index: IntArray) -> IntArray:
        """Positions in pass p (a shuffled pass) of the given key bits."""
        perms = self._perms[p]
        assert perms is not None
        inverse = self._inverse[p]
        if inverse is None:
            inverse = (
                _inverse_permutation(perms[0]),
                _inverse_permutation(perms[1]),
            )
            self._inverse[p] = inverse
        inv, inv_tail = inverse
        fb = self.setup.frame_bits
        frame = key_index // fb
        local = key_index - frame * fb
        if inv_tail.size:  # the last frame is shorter and has its own permutation
            in_tail = frame == self.n_frames - 1
            local = np.where(
                in_tail,
                inv_tail[np.minimum(local, inv_tail.size - 1)],
                inv[np.minimum(local, max(inv.size - 1, 0))] if inv.size else 0,
            )
        else:
            local = inv[local]
        return frame * fb + local

    def blocks_of_keys(self, p: int, key_index: IntArray) -> IntArray:
        """Block of pass p holding each of the given key bits."""
        split = self._split[p]
        if split is None:
            pos = self.positions(p, key_index)
            return np.searchsorted(self.block_starts[p], pos, side="right") - 1
        raw, _, half_block = split
        frame = key_index // self.setup.frame_bits
        return half_block[1 - _bits_at(raw, key_index), frame]

    def block_parities(self, p: int, key: BitArray, packed: _PackedCount | None = None) -> BitArray:
        """Parity of every block of pass p for the given key (in key order).

        ``packed``: the key's packed bits and running count, if the caller has them.
        """
        split = self._split[p]
        if split is None:
            return np.bitwise_xor.reduceat(self.shuffled_key(p, key), self.block_starts[p])
        raw, _, half_block = split
        if packed is None:
            packed = _PackedCount(np.packbits(key), key.size)
        # the A half's parity per frame: ones of key AND mask between frame bounds, mod 2
        ends = self.frame_starts + self.frame_lens
        both = _PackedCount(packed.packed & raw, key.size)
        par_a = ((both.ones_before(ends) - both.ones_before(self.frame_starts)) & 1).astype(
            np.uint8
        )
        all_ones = packed.ones_before(ends) - packed.ones_before(self.frame_starts)
        par_b = par_a ^ (all_ones & 1).astype(np.uint8)
        out = np.empty(self.block_starts[p].size, dtype=np.uint8)
        for half, par in ((0, par_a), (1, par_b)):
            idx = half_block[half]
            ok = idx >= 0
            out[idx[ok]] = par[ok]
        return out

    def _build_shuffled_pass(self, k: int) -> None:
        fb = self.setup.frame_bits
        full = int(self.frame_lens[-1]) == fb
        n_full = self.n_frames if full else self.n_frames - 1
        perm = tail = np.zeros(0, dtype=np.int32)
        if n_full:
            perm = self._rng.permutation(fb).astype(np.int32)
        if not full:
            tail = self._rng.permutation(int(self.frame_lens[-1])).astype(np.int32)
        counts = -(-self.frame_lens // k)  # blocks per frame
        frame_of_block = np.repeat(np.arange(self.n_frames, dtype=np.int64), counts)
        first_block = np.cumsum(counts) - counts
        idx_in_frame = np.arange(int(counts.sum())) - np.repeat(first_block, counts)
        starts = self.frame_starts[frame_of_block] + idx_in_frame * k
        frame_end = (self.frame_starts + self.frame_lens)[frame_of_block]
        inferred = np.zeros(starts.size, dtype=bool)
        inferred[np.cumsum(counts) - 1] = True
        self._add(starts, np.minimum(starts + k, frame_end), frame_of_block, inferred)
        self._orders.append(None)
        self._filled.append(None)
        self._perms.append((perm, tail))
        self._inverse.append(None)
        self._split.append(None)

    def _build_halving_pass(self) -> None:
        # Positions: first the A bits of every frame, then the B bits, each in key
        # order; so frame f's A half and B half are each one contiguous block.
        n_total = self.setup.key_bits
        raw = np.frombuffer(self._rng.bytes((n_total + 7) // 8), dtype=np.uint8)
        count = _PackedCount(raw, n_total)
        frame_ends = self.frame_starts + self.frame_lens
        a_end = count.ones_before(frame_ends)
        a_start = np.r_[0, a_end[:-1]]
        n_a = int(a_end[-1]) if a_end.size else 0
        b_start = n_a + self.frame_starts - a_start
        b_end = n_a + frame_ends - a_end
        starts = np.concatenate([a_start, b_start])
        ends = np.concatenate([a_end, b_end])
        frames = np.tile(np.arange(self.n_frames, dtype=np.int64), 2)
        inferred = np.r_[np.zeros(self.n_frames, bool), np.ones(self.n_frames, bool)]
        keep = ends > starts
        # A frame whose split left one half empty has a single block: infer nothing there.
        single = np.bincount(frames[keep], minlength=self.n_frames) == 1
        inferred &= ~single[frames]
        half_block = np.full(2 * self.n_frames, -1, dtype=np.int64)
        half_block[keep] = np.arange(int(keep.sum()))
        self._add(starts[keep], ends[keep], frames[keep], inferred[keep])
        self._orders.append(None)
        self._filled.append(None)
        self._perms.append(None)
        self._inverse.append(None)
        self._split.append((raw, count, half_block.reshape(2, self.n_frames)))

    def _add(
        self, starts: IntArray, ends: IntArray, frames: IntArray, inferred: NDArray[np.bool_]
    ) -> None:
        self.block_starts.append(starts.astype(np.int64))
        self.block_ends.append(ends.astype(np.int64))
        self.block_frame.append(frames)
        self.inferred.append(inferred)


def _parity_by_frame(parities: BitArray, frames: IntArray, n_frames: int) -> BitArray:
    counts = np.bincount(frames, weights=parities, minlength=n_frames)
    return (counts.astype(np.int64) & 1).astype(np.uint8)


def _prefix_xor(bits: BitArray) -> BitArray:
    out = np.empty(bits.size + 1, dtype=np.uint8)
    out[0] = 0
    np.bitwise_xor.accumulate(bits, out=out[1:])
    return out


class CascadeAlice:
    """Alice's side: answers parity queries from her (fixed) key and counts leakage."""

    def __init__(self, key: ArrayLike, setup: CascadeSetup) -> None:
        self.key = as_bits(key, "alice_key")
        if self.key.size != setup.key_bits:
            raise ValueError(f"alice_key: has {self.key.size} bits, setup says {setup.key_bits}")
        self.setup = setup
        self._layout = _Layout(setup)
        self._blk: list[BitArray] = []  # pass -> her parity of every block
        # Prefix XOR of her key in each shuffled pass's order, pass p at p * (key_bits + 1)
        # (zero pages for the halving passes, answered from the split and bit by bit).
        self._stride = setup.key_bits + 1
        self._prefix = np.zeros(len(setup.block_sizes) * self._stride, dtype=np.uint8)
        self._halving = np.zeros(len(setup.block_sizes), dtype=bool)
        self._packed: _PackedCount | None = None
        self.leaked_bits = 0
        self.messages = 0

    def answer(self, query: ParityQuery) -> ParityReply:
        s = np.asarray(query.starts, dtype=np.int64)
        e = np.asarray(query.ends, dtype=np.int64)
        passes = np.asarray(query.passes, dtype=np.int64)
        if s.shape != e.shape or s.shape != passes.shape:
            raise ValueError("ParityQuery: passes, starts and ends differ in length")
        if s.size and (s.min() < 0 or e.max() > self.setup.key_bits or np.any(s >= e)):
            raise ValueError("ParityQuery: ranges must satisfy 0 <= start < end <= key_bits")
        n_passes = len(self.setup.block_sizes)
        top = int(passes.max()) if passes.size else -1
        if passes.size and (passes.min() < 0 or top >= n_passes):
            raise ValueError(f"ParityQuery.passes: outside 0..{n_passes - 1}")
        lay = self._layout
        while lay.n_passes <= top:
            q = lay.n_passes
            lay.build_pass(q)
            if lay.is_halving(q):  # block parities from the split
                if self._packed is None:
                    self._packed = _PackedCount(np.packbits(self.key), self.key.size)
                self._blk.append(lay.block_parities(q, self.key, self._packed))
                self._halving[q] = True
            else:
                pre = self._build_prefix(q)
                self._blk.append(pre[lay.block_ends[q]] ^ pre[lay.block_starts[q]])
        if not self._halving[: top + 1].any():  # the usual case: shuffled passes only
            at = passes * self._stride
            par = self._prefix[at + e] ^ self._prefix[at + s]
        else:
            par = self._mixed_parities(passes, s, e)
        self.leaked_bits += int(par.size)
        self.messages += 1
        return ParityReply(int(par.size), np.packbits(par).tobytes())

    def _mixed_parities(self, passes: IntArray, s: IntArray, e: IntArray) -> BitArray:
        """Parities of ranges of any passes: halving passes' whole blocks from the split,
        parts of their blocks bit by bit; shuffled passes from the prefix parities."""
        lay = self._layout
        par = np.empty(s.size, dtype=np.uint8)
        halving = self._halving[passes]
        hal = np.flatnonzero(halving)
        for p in np.flatnonzero(np.bincount(passes[hal])).tolist():  # a few passes
            sel = hal[passes[hal] == p]
            blk = lay.block_of(p, s[sel])
            whole = (lay.block_starts[p][blk] == s[sel]) & (lay.block_ends[p][blk] == e[sel])
            par[sel[whole]] = self._blk[p][blk[whole]]
            part = sel[~whole]
            if part.size:
                bits = self.key[lay.keys_at(p, _concat_ranges(s[part], e[part]))]
                lens = e[part] - s[part]
                par[part] = np.bitwise_xor.reduceat(bits, np.cumsum(lens) - lens)
        rest = ~halving
        at = passes[rest] * self._stride
        par[rest] = self._prefix[at + e[rest]] ^ self._prefix[at + s[rest]]
        return par

    def _build_prefix(self, p: int) -> BitArray:
        pre = self._prefix[p * self._stride : (p + 1) * self._stride]
        pre[1:] = np.bitwise_xor.accumulate(self._layout.shuffled_key(p, self.key))
        return pre


@dataclass
class CascadeStats:
    """What a reconciliation disclosed and did (Bob's view, equal to Alice's count)."""

    leaked_bits: int = 0
    queries: int = 0
    rounds: int = 0
    corrected_bits: int = 0
    inferred_parities: int = 0
    passes: int = 0
    per_pass_leak: list[int] = field(default_factory=list)


class CascadeBob:
    """Bob's side: drives the protocol and corrects his key in place.

    Use ``query = bob.next_query()``; while it is not None, send it to Alice and
    pass her answer to ``bob.receive(reply)``. ``bob.key`` is the corrected key.

    Frames are independent, so each runs its own Cascade and one message carries
    the next step of every frame: the block parities of the pass it starts, or one
    bisection level of the blocks it is bisecting (levels whose parities are
    already known are descended without asking). A frame's round ends when its
    bisections have found their bits; they are flipped, and the frame picks its
    next step: the odd blocks of its started pass with the smallest blocks, else
    its next pass, else it is done.
    """

    def __init__(self, key: ArrayLike, setup: CascadeSetup) -> None:
        self.key = as_bits(key, "bob_key").copy()
        if self.key.size != setup.key_bits:
            raise ValueError(f"bob_key: has {self.key.size} bits, setup says {setup.key_bits}")
        self.setup = setup
        self.stats = CascadeStats(per_pass_leak=[0] * len(setup.block_sizes))
        self._pass_leak = np.zeros(len(setup.block_sizes), dtype=np.int64)
        self._lay = _Layout(setup)
        self._keymul = np.int64(setup.key_bits + 1)
        sizes = setup.block_sizes
        self._n_passes = len(sizes)
        # rank of each pass when ordered by (block size, index): smaller blocks first.
        self._rank = np.argsort(np.argsort([s * len(sizes) + r for r, s in enumerate(sizes)]))
        # Every block of every built pass, passes laid end to end (pass r's blocks
        # from _g_off[r]): Alice's and Bob's parities, frame, pass, rank, range,
        # whether it was ever bisected.
        self._g_off = [0]
        self._g_alice = np.zeros(0, dtype=np.uint8)
        self._g_bob = np.zeros(0, dtype=np.uint8)
        self._g_frame = np.zeros(0, dtype=np.int64)
        self._g_pass = np.zeros(0, dtype=np.int64)
        self._g_rank = np.zeros(0, dtype=np.int64)
        self._g_s = np.zeros(0, dtype=np.int64)
        self._g_e = np.zeros(0, dtype=np.int64)
        self._g_bisected = np.zeros(0, dtype=bool)
        # Alice's parities of sub-blocks learnt while bisecting: the nodes of each
        # block's bisection tree in heap order (root 1, children 2h and 2h + 1) at
        # 4 * (pass * key_bits + block start) + h (h < 4 * block length); 0 unknown,
        # else parity + 1. Zero pages: memory is only spent where blocks were bisected.
        self._nodes = np.zeros(4 * len(sizes) * setup.key_bits, dtype=np.uint8)
        n_frames = self._lay.n_frames
        self._frame_parity = np.zeros(n_frames, dtype=np.uint8)
        self._started = np.zeros(n_frames, dtype=np.int64)  # passes started per frame
        self._busy = np.zeros(n_frames, dtype=bool)  # bisecting
        self._done = np.zeros(n_frames, dtype=bool)
        # Bisections under way, one column each, rows _PAS.._PS (one array, so dropping
        # the finished ones is one gather): pass, range [s, e), frame, 4 * (pass *
        # key_bits + block start) (its tree in _nodes), Alice's parity of it, heap index h
        # of [s, e) in that tree, pbase, whether its block was bisected before (known
        # sub-block parities to look up) and Bob's prefix parity at s. Bob's prefix
        # parities over the blocks under bisection are laid end to end in a pool (his
        # key does not change in a frame during its round): the parity of [a, b) of
        # bisection i is pool[a + pbase_i] ^ pool[b + pbase_i].
        self._iv = np.zeros((_ROWS, 0), dtype=np.int64)
        self._pool = np.zeros(1 << 16, dtype=np.uint8)
        self._pool_used = 0
        self._active = np.zeros(n_frames, dtype=np.int64)  # bisections under way per frame
        self._asked: list[IntArray] = []  # passes of the ranges of every query
        self._idle_changed = True  # some frame became idle since the last choice
        self._shuffled: list[int] = []
        self._h_raw = np.zeros((0, 0), dtype=np.uint8)
        self._g_odd = np.zeros(0, dtype=np.uint8)  # Alice's and Bob's block parities differ
        self._g_static = np.zeros((_STATIC, 0), dtype=np.int64)  # rows _PAS.._BASE per block
        self._sh_table = np.zeros((0, 0), dtype=np.int64)
        # His key in each shuffled pass's order (row _kp_row[pass]; -1: a halving pass),
        # kept up to date by corrections, and where each bit of a full frame sits in it.
        self._kp_list: list[BitArray] = []
        self._kp = np.zeros((0, 0), dtype=np.uint8)
        self._kp_row = np.full(len(sizes), -1, dtype=np.int64)
        self._sh_pos = np.zeros((0, 0), dtype=np.int64)
        self._sh_bpf = np.zeros((0, 1), dtype=np.int64)
        self._n_full = 0
        self._packed: _PackedCount | None = None  # his key packed, for the block parities
        self._h_blocks = np.zeros((0, 2, 0), dtype=np.int64)
        # Errors found by bisections whose frame's round is not over: key indices, frames.
        self._found_bits = np.zeros(0, dtype=np.int64)
        self._found_frames = np.zeros(0, dtype=np.int64)
        self._gen = self._protocol()
        self._query: ParityQuery | None = next(self._gen, None)

    # -- public stepping API -------------------------------------------------
    def next_query(self) -> ParityQuery | None:
        """The query to send to Alice now, or None when reconciliation is over."""
        return self._query

    def receive(self, reply: ParityReply) -> None:
        """Feed Alice's reply to the pending query."""
        if self._query is None:
            raise RuntimeError("CascadeBob.receive: no query is pending")
        if reply.count != self._query.starts.size:
            raise ValueError(
                f"ParityReply: {reply.count} parities for a query of {self._query.starts.size}"
            )
        self.stats.leaked_bits += reply.count
        self.stats.queries += 1
        try:
            self._query = self._gen.send(reply.bits())
        except StopIteration:
            self._query = None

    @property
    def done(self) -> bool:
        return self._query is None

    # -- protocol -------------------------------------------------------------
    def _protocol(self) -> Generator[ParityQuery, BitArray, None]:
        # Every frame asks for the block parities of every pass sooner or later, so
        # they are all asked at once; a frame then "starts" a pass without a message.
        lay = self._lay
        self._packed = _PackedCount(np.packbits(self.key), self.key.size)
        for q in range(self._n_passes):
            lay.build_pass(q)
            self._add_pass_blocks(q)
        n0 = lay.block_starts[0].size
        # pass 0: every block (they give the frame parities); later passes: all but
        # the one block per frame that the frame parity gives
        ask = ~np.concatenate([np.zeros(n0, dtype=bool), *lay.inferred[1:]])
        asked = np.flatnonzero(ask)
        bits = yield ParityQuery(self._g_pass[asked], self._g_s[asked], self._g_e[asked])
        self._pass_leak += np.bincount(self._g_pass[asked], minlength=self._n_passes)
        self._g_alice[asked] = bits
        self._frame_parity = _parity_by_frame(self._g_alice[:n0], lay.block_frame[0], lay.n_frames)
        inferred = np.flatnonzero(~ask)
        others = _parity_by_frame(
            self._g_alice[asked[n0:]],
            self._g_frame[asked[n0:]] + self._g_pass[asked[n0:]] * lay.n_frames,
            self._n_passes * lay.n_frames,
        )
        fp = self._g_frame[inferred] + self._g_pass[inferred] * lay.n_frames
        self._g_alice[inferred] = self._frame_parity[self._g_frame[inferred]] ^ others[fp]
        self._g_odd = self._g_alice ^ self._g_bob  # from now on kept up to date by _flip
        self._g_static = np.empty((_STATIC, self._g_s.size), dtype=np.int64)
        self._g_static[_PAS], self._g_static[_S], self._g_static[_E] = (
            self._g_pass,
            self._g_s,
            self._g_e,
        )
        self._g_static[_FRAME] = self._g_frame
        self._g_static[_BASE] = 4 * (self._g_pass * self.setup.key_bits + self._g_s)
        self.stats.inferred_parities += int(inferred.size)
        self.stats.passes = self._n_passes
        self._started[:] = 1
        # For corrections: the halving passes' split masks stacked, and the global block
        # id of each (pass, half, frame).
        self._shuffled = [q for q in range(self._n_passes) if not lay.is_halving(q)]
        if self._kp_list:
            self._kp = np.stack(self._kp_list)
            self._kp_list = []
            self._kp_row[self._shuffled] = np.arange(len(self._shuffled))
        halving = [q for q in range(self._n_passes) if lay.is_halving(q)]
        if halving:
            splits = [lay.halving_split(q) for q in halving]
            self._h_raw = np.stack([a for a, _ in splits])
            self._h_blocks = np.stack(
                [hb + self._g_off[q] for q, (_, hb) in zip(halving, splits, strict=True)]
            )
        # For corrections in full frames: per shuffled pass, the global block of each
        # position of a frame's permutation in frame 0, and blocks per frame.
        perms = [lay._perms[q] for q in self._shuffled]
        if self._shuffled and all(pt is not None and pt[0].size for pt in perms):
            self._sh_pos = np.stack([_inverse_permutation(pt[0]) for pt in perms if pt is not None])
            sizes_sh = np.array([self.setup.block_sizes[q] for q in self._shuffled])
            offs_sh = np.array([self._g_off[q] for q in self._shuffled])
            self._sh_table = offs_sh[:, None] + self._sh_pos // sizes_sh[:, None]
            fb = self.setup.frame_bits
            self._sh_bpf = np.array(
                [[-(-fb // self.setup.block_sizes[q])] for q in self._shuffled], dtype=np.int64
            )
            self._n_full = lay.n_frames - (int(lay.frame_lens[-1]) < fb)
        while True:
            while self._finish_rounds() | self._choose_steps() | self._descend_known():
                self._check_corrections()  # frames whose round ended without a message go on
            iv = self._iv
            if iv.shape[1] == 0:  # every frame is done
                if self._asked:
                    self._pass_leak += np.bincount(
                        np.concatenate(self._asked), minlength=self._n_passes
                    )
                self.stats.per_pass_leak = self._pass_leak.tolist()
                return
            m = (iv[_S] + iv[_E]) >> 1
            self._asked.append(iv[_PAS])  # never changed in place
            bits = yield ParityQuery(iv[_PAS], iv[_S], m)
            self._step(iv, m, bits)
            self._take_singles()

    def _choose_steps(self) -> bool:
        """Give every idle frame its next step; True if some frame started bisecting."""
        if not self._idle_changed:
            return False
        self._idle_changed = False
        idle = ~(self._busy | self._done)
        if not idle.any():
            return False
        # Per frame: the odd blocks of its started pass with the smallest blocks; if
        # its started passes are even, it starts passes until one has odd blocks.
        odd = np.nonzero(self._g_odd.view(bool))[0]  # 0/1 bytes; ~15x flatnonzero on uint8
        odd = odd[idle[self._g_frame[odd]]]
        frames, pas = self._g_frame[odd], self._g_pass[odd]
        # started passes by rank (< n_passes) beat the next passes to start, in order
        key = np.where(pas < self._started[frames], self._g_rank[odd], self._n_passes + pas)
        best = np.full(self._lay.n_frames, 2 * self._n_passes, dtype=np.int64)
        np.minimum.at(best, frames, key)
        later = idle & (best >= self._n_passes) & (best < 2 * self._n_passes)
        self._started[later] = best[later] - self._n_passes + 1
        self._done |= idle & (best == 2 * self._n_passes)
        if odd.size:
            new = odd[key == best[frames]]  # global block ids
            if self._iv.shape[1] == 0:
                self._pool_used = 0  # no bisection refers to the pool any more
            add = np.empty((_ROWS, new.size), dtype=np.int64)
            add[:_STATIC] = self._g_static[:, new]
            frames, pas, s = add[_FRAME], add[_PAS], add[_S]
            add[_PAR] = self._g_alice[new]
            add[_H] = 1
            add[_PB] = self._pool_prefixes(pas, s, add[_E])
            add[_KNOWN] = self._g_bisected[new]
            add[_PS] = self._pool[s + add[_PB]]
            self._iv = np.concatenate([self._iv, add], axis=1)
            self._active += np.bincount(frames, minlength=self._lay.n_frames)
            self._busy[frames] = True
            self._g_bisected[new] = True
            self._take_singles()  # one-bit blocks (tiny frames) need no bisection
        return bool(odd.size)

    def _add_pass_blocks(self, q: int) -> None:
        lay = self._lay
        nb = lay.block_starts[q].size
        cat = np.concatenate
        self._g_off.append(self._g_off[-1] + nb)
        self._g_alice = cat([self._g_alice, np.zeros(nb, dtype=np.uint8)])
        if lay.is_halving(q):
            par = lay.block_parities(q, self.key, self._packed)
        else:
            kp = lay.shuffled_key(q, self.key)
            self._kp_list.append(kp)
            par = np.bitwise_xor.reduceat(kp, lay.block_starts[q])
        self._g_bob = cat([self._g_bob, par])
        self._g_frame = cat([self._g_frame, lay.block_frame[q]])
        self._g_pass = cat([self._g_pass, np.full(nb, q, dtype=np.int64)])
        self._g_rank = cat([self._g_rank, np.full(nb, self._rank[q], dtype=np.int64)])
        self._g_s = cat([self._g_s, lay.block_starts[q]])
        self._g_e = cat([self._g_e, lay.block_ends[q]])
        self._g_bisected = cat([self._g_bisected, np.zeros(nb, dtype=bool)])

    def _pool_prefixes(self, pas: IntArray, s: IntArray, e: IntArray) -> IntArray:
        """Append Bob's prefix parities over the new blocks to the pool; their pbase."""
        lens = e - s
        offs = np.cumsum(lens) - lens
        idx = np.repeat(s - offs, lens) + np.arange(int(lens.sum()), dtype=np.int64)
        first = int(pas[0])
        if (pas == first).all():  # the usual case: one pass
            vals = self._bits_in_order(first, idx)
        else:
            vals = np.empty(idx.size, dtype=np.uint8)
            owner = np.repeat(pas, lens)
            for r in np.flatnonzero(np.bincount(pas)).tolist():  # a few passes
                sel = owner == r
                vals[sel] = self._bits_in_order(r, idx[sel])
        pre = _prefix_xor(vals)
        at, need = self._pool_used, self._pool_used + pre.size
        if need > self._pool.size:
            grown = np.empty(max(need, 2 * self._pool.size), dtype=np.uint8)
            grown[:at] = self._pool[:at]
            self._pool = grown
        self._pool[at:need] = pre
        self._pool_used = need
        return at + offs - s

    def _bits_in_order(self, p: int, positions: IntArray) -> BitArray:
        """Bob's current bits at the given positions of pass p."""
        row = self._kp_row[p]
        if row >= 0:
            return self._kp[row, positions]
        return self.key[self._lay.keys_at(p, positions)]

    def _step(self, iv: IntArray, m: IntArray, left: BitArray) -> None:
        """Descend one level in the bisections of ``iv`` (columns, in place), given
        Alice's parities of their left halves [s, m)."""
        pm = self._pool[m + iv[_PB]]
        go_right = left == (pm ^ iv[_PS])  # the halves [s, m) agree: the error is right
        self._nodes[iv[_BASE] + 2 * iv[_H]] = left + 1  # the right half's follows from it
        iv[_PAR] = left ^ (iv[_PAR] & go_right)
        np.copyto(iv[_S], m, where=go_right)
        np.copyto(iv[_PS], pm, where=go_right)
        np.copyto(iv[_E], m, where=~go_right)
        iv[_H] = 2 * iv[_H] + go_right

    def _take_singles(self) -> None:
        """Bisections down to one bit have found it: record it (flipped at round end)."""
        iv = self._iv
        single = (iv[_E] - iv[_S]) == 1
        if not np.count_nonzero(single):  # (cheaper than .any() on small arrays)
            return
        done = iv.compress(single, axis=1)  # (~2x a boolean index here)
        pos, pas1 = done[_S], done[_PAS]
        bits = np.empty(pos.size, dtype=np.int64)
        for r in np.flatnonzero(np.bincount(pas1)).tolist():
            one = pas1 == r
            bits[one] = self._lay.keys_at(r, pos[one])
        self._found_bits = np.concatenate([self._found_bits, bits])
        self._found_frames = np.concatenate([self._found_frames, done[_FRAME]])
        self._active -= np.bincount(done[_FRAME], minlength=self._lay.n_frames)
        self._iv = iv.compress(~single, axis=1)

    def _check_corrections(self) -> None:
        """Consistent parities never make Bob flip a correct bit, so he corrects at most the
        errors there are; inconsistent ones (a faulty peer) could keep him flipping for ever,
        without a message. Past a quarter of the key (a QBER no key survives) he stops."""
        limit = max(64, self.key.size // 4)
        if self.stats.corrected_bits > limit:
            raise ValueError(
                f"Cascade corrected {self.stats.corrected_bits} of {self.key.size} bits, more "
                f"than {limit}: the parities are inconsistent (or the QBER is far beyond a key)"
            )

    def _descend_known(self) -> bool:
        """Descend every level whose left parity follows from known ones; True if any.

        Only blocks bisected in an earlier round can have known sub-block parities,
        and only along the paths bisected then.
        """
        moved = False
        while True:
            iv = self._iv
            cand = iv[_KNOWN].nonzero()[0]
            if cand.size == 0:
                break
            sub = iv[:, cand]
            lv = self._nodes[sub[_BASE] + 2 * sub[_H]]
            known = lv > 0
            # a node whose halves are unknown was never bisected: nor were those below it
            iv[_KNOWN, cand[~known]] = 0
            if not np.count_nonzero(known):
                break
            sub = sub.compress(known, axis=1)
            self.stats.inferred_parities += int(sub.shape[1])
            self._step(sub, (sub[_S] + sub[_E]) >> 1, (lv[known] - 1).astype(np.uint8))
            iv[:, cand[known]] = sub
            self._take_singles()
            moved = True
        return moved

    def _finish_rounds(self) -> bool:
        """Flip the bits found by frames whose bisections are all over; True if any."""
        if self._found_bits.size == 0:
            return False
        ended = self._busy & (self._active == 0)  # every bisection has found its bit
        n_ended = int(np.count_nonzero(ended))
        if n_ended == 0:
            return False
        bits, frames = self._found_bits, self._found_frames
        over = ended[frames]
        self._found_bits, self._found_frames = bits[~over], frames[~over]
        self._flip(bits[over])
        self._busy &= ~ended
        self._idle_changed = True
        self.stats.rounds += n_ended
        return True

    def _flip(self, bits: IntArray) -> None:
        """Correct Bob's key bits and the parities of every block holding them."""
        self.key[bits] ^= 1
        fb = self.setup.frame_bits
        frame = bits // fb
        flipped = []
        rest = bits
        if self._sh_table.size:  # bits in full frames: every shuffled pass at once
            full = frame < self._n_full
            b, f = (bits, frame) if full.all() else (bits[full], frame[full])
            local = b - f * fb
            flipped.append((self._sh_table[:, local] + self._sh_bpf * f).ravel())
            self._kp[np.arange(self._kp.shape[0])[:, None], self._sh_pos[:, local] + f * fb] ^= 1
            rest = bits[~full]
        if rest.size:
            for r in self._shuffled:
                flipped.append(self._g_off[r] + self._lay.blocks_of_keys(r, rest))
                self._kp[self._kp_row[r], self._lay.positions(r, rest)] ^= 1
        if self._h_blocks.size:  # every halving pass at once
            half = 1 - ((self._h_raw[:, bits >> 3] >> (7 - (bits & 7))) & 1)  # 0: A, 1: B
            rows = np.arange(self._h_blocks.shape[0])[:, None]
            flipped.append(self._h_blocks[rows, half, frame[None, :]].ravel())
        if flipped:
            np.bitwise_xor.at(self._g_odd, np.concatenate(flipped), np.uint8(1))
        self.stats.corrected_bits += int(bits.size)


@dataclass(frozen=True)
class ReconciliationResult:
    """Outcome of :func:`reconcile` run with both sides in one process."""

    corrected_key: BitArray
    leaked_bits: int
    stats: CascadeStats
    setup: CascadeSetup

    def efficiency(self, qber: float) -> float:
        """f = leaked / (n h(qber)) for a given (true or estimated) QBER."""
        return self.leaked_bits / (self.setup.key_bits * binary_entropy(qber))


def reconcile(
    alice_key: ArrayLike,
    bob_key: ArrayLike,
    qber_estimate: float,
    *,
    shuffle_seed: int = 0,
    frame_bits: int | None = None,
    block_sizes: Sequence[int] | None = None,
) -> ReconciliationResult:
    """Run Cascade with both sides locally (tests, benchmarks, single-process runs)."""
    a = as_bits(alice_key, "alice_key")
    b = as_bits(bob_key, "bob_key")
    if a.size != b.size:
        raise ValueError(f"keys differ in length: alice {a.size}, bob {b.size}")
    if block_sizes is None:
        setup = CascadeSetup.for_qber(a.size, qber_estimate, shuffle_seed, frame_bits)
    else:
        setup = CascadeSetup(
            a.size, min(frame_bits or a.size, a.size), tuple(block_sizes), shuffle_seed
        )
    alice = CascadeAlice(a, setup)
    bob = CascadeBob(b, setup)
    while (q := bob.next_query()) is not None:
        bob.receive(alice.answer(q))
    assert alice.leaked_bits == bob.stats.leaked_bits
    return ReconciliationResult(bob.key, alice.leaked_bits, bob.stats, setup)
