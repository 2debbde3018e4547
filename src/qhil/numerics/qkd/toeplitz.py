"""Toeplitz hashing over GF(2) via FFT.

Privacy amplification and the verification tags use multiply-add-shift hashing
(:mod:`.universal_hash`, ~10x faster at 1e7 bits); Toeplitz stays available as the
``"toeplitz"`` family of an ``Amplification`` message and for comparison.

The m x n Toeplitz matrix is defined by a seed of n + m - 1 bits:
``T[i, j] = seed[i - j + n - 1]``, so ``T @ x mod 2`` is a slice of the linear
convolution ``seed * x``. We compute that convolution with real float64 FFTs of
length L >= n + m - 1 (cyclic wrap never reaches the needed slice) and round.

Exactness: the FFT convolution error is bounded by about
``c * log2(L) * 2^-53 * ||seed||_2 * ||x||_2 <= c * log2(L) * 2^-53 * L`` for 0/1
inputs, i.e. below 1e-6 for L <= 2^26 even with a generous c = 10; we therefore
cap each FFT at ``max_fft_len`` (2^24 by default) and split larger products into
Toeplitz sub-blocks, each of which is again a small convolution. As a guard
against a broken FFT backend the rounding residue is checked on every call.

Speed: scipy's pocketfft is always available; when the optional ``pyfftw``
package is installed, FFTW plans (FFTW_ESTIMATE, planned in milliseconds) on
aligned buffers cached per FFT length are used instead, about 2-3x faster for
large inputs. ``set_fft_backend`` picks one explicitly (tests run both).
"""

from __future__ import annotations

import importlib.util
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import scipy.fft as sfft
from numpy.typing import ArrayLike, NDArray

from qhil.numerics.qkd.bits import BitArray, as_bits, random_bits

DEFAULT_MAX_FFT_LEN = 1 << 24
_MAX_ROUNDING_RESIDUE = 0.25


class FftExactnessError(ArithmeticError):
    """The FFT result was not close enough to integers to round safely."""


def seed_length(n_in: int, n_out: int) -> int:
    """Seed bits needed to hash n_in bits down to n_out bits."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"Toeplitz hash needs n_in >= 1 and n_out >= 1 (got {n_in}, {n_out})")
    return n_in + n_out - 1


def new_seed(rng: np.random.Generator, n_in: int, n_out: int) -> BitArray:
    """A fresh uniformly random seed (Alice draws it and sends it to Bob)."""
    return random_bits(rng, seed_length(n_in, n_out))


# Optional accelerator, imported at its first use: importing pyfftw pulls in dask
# (~0.25 s), which every `qhil` command would otherwise pay at start-up.
_HAVE_FFTW = importlib.util.find_spec("pyfftw") is not None


def _fftw() -> Any:
    import pyfftw

    return pyfftw


_FFTW_MIN_LEN = 1 << 14  # below this pocketfft is as fast and needs no plan
_FFTW_CACHE_SIZE = 2  # plans keep ~40 bytes per FFT point alive
_backend = "fftw" if _HAVE_FFTW else "scipy"


def fft_backend() -> str:
    """The FFT library in use: "fftw" (pyfftw installed) or "scipy"."""
    return _backend


def set_fft_backend(name: str) -> None:
    """Choose "scipy", "fftw" (needs pyfftw) or "auto"."""
    global _backend
    if name == "auto":
        _backend = "fftw" if _HAVE_FFTW else "scipy"
    elif name == "fftw" and not _HAVE_FFTW:
        raise ValueError("fft backend 'fftw' needs the pyfftw package")
    elif name in ("scipy", "fftw"):
        _backend = name
    else:
        raise ValueError(f"unknown fft backend {name!r} (scipy, fftw, auto)")


class _FftwConvolver:
    """Linear convolution of two real inputs with cached FFTW plans of one length."""

    def __init__(self, fft_len: int) -> None:
        assert _HAVE_FFTW
        _pyfftw = _fftw()
        self.a = _pyfftw.empty_aligned(fft_len, dtype="float64")
        self.b = _pyfftw.empty_aligned(fft_len, dtype="float64")
        self.fa = _pyfftw.empty_aligned(fft_len // 2 + 1, dtype="complex128")
        self.fb = _pyfftw.empty_aligned(fft_len // 2 + 1, dtype="complex128")
        self.out = _pyfftw.empty_aligned(fft_len, dtype="float64")
        flags = ("FFTW_ESTIMATE",)
        self.fwd_a = _pyfftw.FFTW(self.a, self.fa, flags=flags, threads=1)
        self.fwd_b = _pyfftw.FFTW(self.b, self.fb, flags=flags, threads=1)
        self.inv = _pyfftw.FFTW(
            self.fa,
            self.out,
            direction="FFTW_BACKWARD",
            flags=(*flags, "FFTW_DESTROY_INPUT"),
            threads=1,
        )
        self.lock = threading.Lock()

    def convolve(self, x: BitArray, y: BitArray, lo: int, hi: int) -> NDArray[np.float64]:
        with self.lock:
            self.a[: x.size] = x
            self.a[x.size :] = 0.0
            self.b[: y.size] = y
            self.b[y.size :] = 0.0
            self.fwd_a()
            self.fwd_b()
            self.fa *= self.fb
            self.inv()  # normalised inverse
            return self.out[lo:hi].copy()


_fftw_cache: OrderedDict[int, _FftwConvolver] = OrderedDict()
_fftw_cache_lock = threading.Lock()


def _fftw_convolver(fft_len: int) -> _FftwConvolver:
    with _fftw_cache_lock:
        conv = _fftw_cache.get(fft_len)
        if conv is None:
            conv = _FftwConvolver(fft_len)
            _fftw_cache[fft_len] = conv
            while len(_fftw_cache) > _FFTW_CACHE_SIZE:
                _fftw_cache.popitem(last=False)
        else:
            _fftw_cache.move_to_end(fft_len)
        return conv


def _conv_slice(x: BitArray, seed: BitArray, n_out: int) -> BitArray:
    """T @ x mod 2 for one sub-block, by a single FFT convolution."""
    n = x.size
    fft_len = sfft.next_fast_len(n + n_out - 1, real=True)
    if _backend == "fftw" and fft_len >= _FFTW_MIN_LEN:
        z = _fftw_convolver(fft_len).convolve(x, seed, n - 1, n - 1 + n_out)
    else:
        fx = sfft.rfft(x.astype(np.float64), fft_len)
        fx *= sfft.rfft(seed.astype(np.float64), fft_len)
        z = sfft.irfft(fx, fft_len)[n - 1 : n - 1 + n_out]
    r = np.rint(z)
    z -= r  # rounding residue, in place (z is a private copy)
    residue = max(float(z.max()), -float(z.min())) if z.size else 0.0
    if residue > _MAX_ROUNDING_RESIDUE:
        raise FftExactnessError(
            f"Toeplitz FFT residue {residue:.3g} too large (fft_len {fft_len}); lower max_fft_len"
        )
    return (r.astype(np.int64) & 1).astype(np.uint8)


def toeplitz_hash(
    bits: ArrayLike,
    seed: ArrayLike,
    n_out: int,
    *,
    max_fft_len: int = DEFAULT_MAX_FFT_LEN,
) -> BitArray:
    """Return ``T @ bits mod 2`` (n_out bits) for the Toeplitz matrix of ``seed``.

    ``seed`` must hold exactly ``len(bits) + n_out - 1`` bits. O(n log n).
    """
    x = as_bits(bits, "bits")
    s = as_bits(seed, "seed")
    n = x.size
    need = seed_length(n, n_out)
    if s.size != need:
        raise ValueError(f"seed: expected {need} bits for {n} -> {n_out} (got {s.size})")
    if max_fft_len < 2:
        raise ValueError(f"max_fft_len must be >= 2 (got {max_fft_len})")
    if n + n_out - 1 <= max_fft_len:
        return _conv_slice(x, s, n_out)
    # Split into sub-blocks of at most `step` rows and `step` columns; block
    # (rows i0:i1, cols j0:j1) is Toeplitz with seed[n - j1 + i0 : ... + rows + cols - 1].
    step = max(1, max_fft_len // 2)
    out = np.zeros(n_out, dtype=np.uint8)
    for i0 in range(0, n_out, step):
        i1 = min(i0 + step, n_out)
        for j0 in range(0, n, step):
            j1 = min(j0 + step, n)
            lo = n - j1 + i0
            seg = s[lo : lo + (i1 - i0) + (j1 - j0) - 1]
            out[i0:i1] ^= _conv_slice(x[j0:j1], seg, i1 - i0)
    return out


def toeplitz_hash_direct(bits: ArrayLike, seed: ArrayLike, n_out: int) -> BitArray:
    """Reference O(n m) product with the explicit matrix (for tests and small inputs)."""
    x = as_bits(bits, "bits")
    s = as_bits(seed, "seed")
    n = x.size
    if s.size != seed_length(n, n_out):
        raise ValueError(f"seed: expected {seed_length(n, n_out)} bits (got {s.size})")
    rows = np.arange(n_out)[:, None]
    cols = np.arange(n)[None, :]
    matrix = s[rows - cols + n - 1].astype(np.int64)
    return ((matrix @ x.astype(np.int64)) & 1).astype(np.uint8)


def toeplitz_rows_direct(bits: ArrayLike, seed: ArrayLike, n_out: int, rows: ArrayLike) -> BitArray:
    """Selected output bits ``(T @ bits)[rows] mod 2`` by exact integer dot products.

    Used to spot-check large hashes without the FFT (O(len(rows) * n)).
    """
    x = as_bits(bits, "bits").astype(np.int64)
    s = as_bits(seed, "seed")
    n = x.size
    idx = np.asarray(rows, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n_out):
        raise ValueError(f"rows: must lie in [0, {n_out})")
    rev = s[::-1].astype(np.int64)  # row i of T is rev[m - 1 - i : m - 1 - i + n]
    out = np.empty(idx.size, dtype=np.uint8)
    for k, i in enumerate(idx):  # a handful of rows; each row is one vectorised dot product
        start = n_out - 1 - int(i)
        out[k] = int(rev[start : start + n] @ x) & 1
    return out


def privacy_amplification(key: ArrayLike, seed: ArrayLike, final_length: int) -> BitArray:
    """Compress the reconciled key to ``final_length`` secret bits (Toeplitz hash)."""
    if final_length < 1:
        raise ValueError(f"final_length must be >= 1 (got {final_length})")
    return toeplitz_hash(key, seed, final_length)
