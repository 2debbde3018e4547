"""BB84 pulse-train alignment: which of Alice's pulses did each of Bob's clicks come from?

Alice emits pulse ``k`` at ``t0 + k * T`` on her clock. Bob timestamps clicks on
his own clock, which runs at ``1 + drift`` times Alice's rate and has an unknown
offset (clock offset plus fibre delay). Two steps, both vectorised:

1. **Pulse grid** (:func:`estimate_pulse_grid`) from Bob's timestamps alone.
   Each click's phase ``theta = 2 pi (t mod T) / T`` clusters around one value
   when the period is right; a drift makes it rotate linearly in time. The click
   phasors ``exp(i theta)`` are summed per short chunk of time and an FFT over
   the chunks finds the rotation rate (= period correction); an unwrapped-phase
   line fit over growing spans then refines it to parts in 1e-10, and the
   circular mean gives the grid's phase. Rounding then gives each click a
   grid number ``n`` (periods counted from Bob's clock zero).
2. **Integer pulse offset** (:func:`align_pulse_train`). Alice reveals bases and
   bits of a subset of pulses. With ``s = +1`` for bit 0 and ``-1`` for bit 1,
   ``C(K) = sum_n s_Bob[n] * s_Alice[n + K]`` over matching bases is about
   ``N_match (1 - 2 QBER)`` at the true offset ``K`` and ``0 +- sqrt(N_match)``
   elsewhere; it is computed for every ``K`` in the search range at once by FFT,
   in blocks of Bob's pulse numbers, until the peak is unmistakable.

The pulse index of each click is then ``n + K``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.fft

from qhil.numerics.timing._validate import as_timestamps, positive_float, positive_int
from qhil.numerics.timing.clock_model import ClockModel, fit_line
from qhil.numerics.timing.errors import AlignmentError, TimingInputError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_TWO_PI = 2.0 * np.pi
# Coarse drift search: chunks short enough that max drift turns the phase <= 1/4 turn.
_CHUNK_TURNS_AT_MAX_DRIFT = 0.25
_MAX_COARSE_CHUNKS = 1 << 20
_FIT_SUBCHUNKS = 64
_SPAN_GROWTH = 8
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class PulseGrid:
    """Bob-clock pulse grid: grid point ``m`` lies at
    ``t_ref_ps + phase_ps + (m - origin_number) * period_ps`` on Bob's clock.

    Grid numbers count periods from Bob's clock zero (``origin_number`` is the
    number of the grid point at ``t_ref_ps + phase_ps``), so Alice's pulse index is
    ``m + K`` with ``K ~ -(Bob's clock reading when pulse 0 arrives) / period``.
    ``period_ps`` is Alice's period as Bob's clock sees it, ``T * (1 + drift)``;
    ``jitter_ps`` the robust spread of the clicks about the grid; ``rayleigh_z``
    the phase-clustering significance ``|sum exp(i theta)| / sqrt(N)``.
    """

    period_ps: float
    drift: float
    phase_ps: float
    t_ref_ps: int
    origin_number: int
    jitter_ps: float
    rayleigh_z: float

    def pulse_numbers(self, timestamps: npt.ArrayLike) -> IntArray:
        """Grid number of each timestamp (nearest grid point)."""
        # In place after the exact integer offset: a block's million clicks made 8 passes.
        x = (np.asarray(timestamps, dtype=np.int64) - self.t_ref_ps).astype(np.float64)
        x -= self.phase_ps
        x /= self.period_ps
        np.rint(x, out=x)
        rel = x.astype(np.int64)
        rel += self.origin_number
        return rel

    def residuals_ps(self, timestamps: npt.ArrayLike) -> FloatArray:
        """Time of each timestamp minus its nearest grid point."""
        x = (np.asarray(timestamps, dtype=np.int64) - self.t_ref_ps).astype(np.float64)
        n = np.rint((x - self.phase_ps) / self.period_ps)
        out: FloatArray = x - self.phase_ps - n * self.period_ps
        return out


@dataclass(frozen=True)
class PulseAlignment:
    """Result of :func:`align_pulse_train`.

    ``pulse_index[j]`` is Alice's pulse index of Bob's click ``j``.
    ``pulse_offset`` is ``K`` (index = grid number + K); ``significance``
    the height of ``C(K)`` above the other offsets in robust standard deviations;
    ``agreement`` the fraction of revealed, basis-matched clicks whose bits agree at
    ``K`` (``1 - QBER``), over ``n_compared`` clicks.
    """

    pulse_index: IntArray
    grid: PulseGrid
    pulse_offset: int
    significance: float
    agreement: float
    n_compared: int

    @property
    def pulse0_time_ps(self) -> float:
        """Bob-clock time at which Alice's pulse 0 would be detected."""
        g = self.grid
        return g.t_ref_ps + g.phase_ps - (self.pulse_offset + g.origin_number) * g.period_ps

    def clock_model(self, alice_t0_ps: int) -> ClockModel:
        """Bob's clock against Alice's, given that she emits pulse 0 at ``alice_t0_ps``.

        The offset includes the fibre delay (it is "detected minus emitted").
        """
        return ClockModel(self.pulse0_time_ps - alice_t0_ps, self.grid.drift, int(alice_t0_ps))


class OffsetNotFoundError(AlignmentError):
    """The pulse grid was found (the clicks are on Alice's pulses) but no offset correlates.

    What the search saw, for a diagnosis: ``compared`` basis-matched revealed clicks at
    the best offset, whose bits agree in a fraction ``agreement`` (about 0.5 at a wrong
    offset, or at the right one when the polarization is scrambled);
    ``anti_significance`` the depth of the lowest ``C(K)`` in the same units as the peak's
    significance (a deep minimum: bits systematically inverted).
    """

    def __init__(
        self,
        significance: float,
        threshold: float,
        hint: str,
        *,
        compared: int,
        agreement: float,
        anti_significance: float,
    ) -> None:
        super().__init__("pulse offset", significance, threshold, hint)
        self.compared = compared
        self.agreement = agreement
        self.anti_significance = anti_significance


def _agreement_at(
    k: int,
    n_v: IntArray,
    bb: IntArray,
    bt: IntArray,
    a_idx: IntArray,
    a_basis: IntArray,
    a_bit: IntArray,
) -> tuple[float, int]:
    """Fraction of basis-matched revealed clicks whose bits agree at offset ``k``, and their count."""
    k_v = n_v + k
    pos = np.searchsorted(a_idx, k_v).clip(0, max(a_idx.size - 1, 0))
    hit = (a_idx[pos] == k_v) & (a_basis[pos] == bb)
    n_cmp = int(hit.sum())
    agree = float(np.mean(a_bit[pos][hit] == bt[hit])) if n_cmp else float("nan")
    return agree, n_cmp


def _phasors(x: FloatArray, period: float) -> npt.NDArray[np.complex128]:
    return np.exp(1j * _TWO_PI * (np.mod(x, period) / period))


def _coarse_drift(x: FloatArray, period: float, max_drift: float) -> tuple[float, float]:
    """Drift from the rotation rate of chunk-summed phasors (FFT over chunks).

    Returns (drift, span in ps over which it was measured). ``x`` starts at 0.
    """
    chunk = _CHUNK_TURNS_AT_MAX_DRIFT * period / max_drift
    c = (x // chunk).astype(np.int64)
    use = c < _MAX_COARSE_CHUNKS
    c = c[use]
    n_chunks = int(c[-1]) + 1 if c.size else 1
    z = _phasors(x[use], period)
    zc = np.bincount(c, weights=z.real, minlength=n_chunks) + 1j * np.bincount(
        c, weights=z.imag, minlength=n_chunks
    )
    n_fft = scipy.fft.next_fast_len(4 * n_chunks)
    spec = np.abs(scipy.fft.fft(zc, n=n_fft))
    k = int(np.argmax(spec))
    # Parabolic interpolation on the magnitude for a sub-bin rotation rate.
    y0, y1, y2 = spec[(k - 1) % n_fft], spec[k], spec[(k + 1) % n_fft]
    denom = y0 - 2 * y1 + y2
    frac = 0.5 * (y0 - y2) / denom if denom != 0 else 0.0
    kf = k + frac
    if kf > n_fft / 2:
        kf -= n_fft
    # Phase turns per chunk = drift * chunk / period.
    return float(kf / n_fft * period / chunk), n_chunks * chunk


def _refine_drift(x: FloatArray, period0: float, drift: float, span: float) -> float:
    """Unwrapped-phase line fits over spans growing 8x from ``span`` until all data are used.

    The coarse estimate leaves at most ~1/4 turn of phase error over its own span,
    so 64 sub-chunks per span unwrap safely; each fit shrinks the error enough for
    the next, 8x longer, span.
    """
    total = float(x[-1] - x[0])
    span = min(max(span, 1.0), total)
    while True:
        xs = x[: np.searchsorted(x, x[0] + span, side="right")]
        per = period0 * (1.0 + drift)
        sub = max((xs[-1] - xs[0]) / _FIT_SUBCHUNKS, 1.0)
        s = ((xs - xs[0]) // sub).astype(np.int64).clip(0, _FIT_SUBCHUNKS - 1)
        z = _phasors(xs, per)
        zr = np.bincount(s, weights=z.real, minlength=_FIT_SUBCHUNKS)
        zi = np.bincount(s, weights=z.imag, minlength=_FIT_SUBCHUNKS)
        cnt = np.bincount(s, minlength=_FIT_SUBCHUNKS)
        tm = np.bincount(s, weights=xs, minlength=_FIT_SUBCHUNKS)
        mag = np.hypot(zr, zi)
        ok = (cnt > 0) & (mag > 0)
        if np.count_nonzero(ok) >= 3:
            ang = np.unwrap(np.arctan2(zi[ok], zr[ok]))
            # A chunk's phase error is ~ 1/|z|.
            line = fit_line(tm[ok] / cnt[ok], ang, 1.0 / mag[ok])
            # theta advances 2 pi (drift_true - drift) / ((1 + drift) per) per ps.
            drift += line.slope * (1.0 + drift) * per / _TWO_PI
        if span >= total:
            return drift
        span = min(total, span * _SPAN_GROWTH)


def estimate_pulse_grid(
    timestamps: npt.ArrayLike,
    period_ps: float,
    *,
    max_drift: float = 1e-4,
    t_ref_ps: int | None = None,
    min_rayleigh_z: float = 6.0,
) -> PulseGrid:
    """Fit the pulse grid (period correction and phase) to click timestamps.

    ``period_ps`` is Alice's nominal pulse period; drifts up to ``max_drift``
    (fractional, default 100 ppm) are found. Raises :class:`AlignmentError` if
    the clicks show no phase clustering (``rayleigh_z < min_rayleigh_z``).
    """
    t = as_timestamps(timestamps, "timestamps")
    per = positive_float(period_ps, "period_ps")
    md = positive_float(max_drift, "max_drift")
    if md >= 0.01:
        raise TimingInputError(f"max_drift: {md!r} is not a clock drift (must be < 1e-2)")
    if t.size < 16:
        raise TimingInputError(
            f"timestamps: need at least 16 clicks to fit a pulse grid (got {t.size})"
        )
    ref = int(t[0]) if t_ref_ps is None else int(t_ref_ps)
    x = (t - ref).astype(np.float64)
    drift, span = _coarse_drift(x - x[0], per, md)
    drift = _refine_drift(x, per, drift, span)
    period = per * (1.0 + drift)
    z = _phasors(x, period)
    zsum = complex(z.sum())
    rayleigh_z = abs(zsum) / np.sqrt(t.size)
    if not rayleigh_z >= min_rayleigh_z:
        raise AlignmentError(
            "pulse grid",
            rayleigh_z,
            min_rayleigh_z,
            f"{t.size} clicks show no phase clustering at period {per:g} ps "
            f"(+-{md * 1e6:g} ppm searched)",
        )
    phase = float(np.angle(zsum) / _TWO_PI * period) % period
    n = np.rint((x - phase) / period)
    resid = x - phase - n * period
    jitter = _MAD_TO_SIGMA * float(np.median(np.abs(resid - np.median(resid))))
    origin = round((ref + phase) / period)
    return PulseGrid(period, drift, phase, ref, origin, jitter, rayleigh_z)


def _signed(bases: IntArray, bits: IntArray, basis: int) -> FloatArray:
    """+1 for bit 0, -1 for bit 1 in ``basis``, 0 for the other basis or invalid entries."""
    out: FloatArray = np.where(bases == basis, 1.0 - 2.0 * bits, 0.0)
    return out


def _as_labels(values: npt.ArrayLike, name: str, n: int) -> IntArray:
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise TimingInputError(f"{name}: expected {n} entries, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_:
        raise TimingInputError(f"{name}: expected integer 0/1 labels, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def align_pulse_train(
    bob_timestamps: npt.ArrayLike,
    bob_basis: npt.ArrayLike,
    bob_bit: npt.ArrayLike,
    period_ps: float,
    alice_index: npt.ArrayLike,
    alice_basis: npt.ArrayLike,
    alice_bit: npt.ArrayLike,
    *,
    max_pulse_offset: int,
    pulse_offset_guess: int = 0,
    max_drift: float = 1e-4,
    min_significance: float = 6.0,
    stop_significance: float = 12.0,
    block_pulses: int = 1 << 18,
    grid: PulseGrid | None = None,
) -> PulseAlignment:
    """Give every Bob click its Alice pulse index from the data.

    Bob: sorted click timestamps (his clock, int64 ps) with the basis (0/1) and
    bit (0/1) he measured; clicks with another basis value (e.g. -1 for a double
    click) join the grid fit but not the correlation. Alice: the revealed subset,
    pulse indices with their basis and bit. The offset ``K`` (Alice's index minus
    Bob's grid number, see :class:`PulseGrid`; about ``-t0_B / period`` when pulse 0
    reaches Bob at his clock reading ``t0_B``) is searched in
    ``pulse_offset_guess +- max_pulse_offset``; blocks of ``block_pulses`` of
    Bob's pulse numbers are correlated until the peak reaches
    ``stop_significance`` or the data end. Raises :class:`AlignmentError` when the
    final peak stays below ``min_significance``. ``grid``: the pulse grid of these
    timestamps when already fitted (:func:`estimate_pulse_grid`), so a narrow search and
    its fallback fit it once.
    """
    t = as_timestamps(bob_timestamps, "bob_timestamps")
    kmax = positive_int(max_pulse_offset, "max_pulse_offset")
    block = positive_int(block_pulses, "block_pulses")
    b_basis = _as_labels(bob_basis, "bob_basis", t.size)
    b_bit = _as_labels(bob_bit, "bob_bit", t.size)
    a_idx = np.asarray(alice_index)
    if a_idx.ndim != 1 or (a_idx.size and not np.issubdtype(a_idx.dtype, np.integer)):
        raise TimingInputError("alice_index: expected a 1-D integer array of pulse indices")
    a_idx = a_idx.astype(np.int64)
    a_basis = _as_labels(alice_basis, "alice_basis", a_idx.size)
    a_bit = _as_labels(alice_bit, "alice_bit", a_idx.size)
    if a_idx.size > 1 and bool(np.any(a_idx[1:] < a_idx[:-1])):
        order = np.argsort(a_idx, kind="stable")
        a_idx, a_basis, a_bit = a_idx[order], a_basis[order], a_bit[order]

    if grid is None:
        grid = estimate_pulse_grid(t, period_ps, max_drift=max_drift)
    n = grid.pulse_numbers(t)
    valid = ((b_basis == 0) | (b_basis == 1)) & ((b_bit == 0) | (b_bit == 1))
    a_valid = ((a_basis == 0) | (a_basis == 1)) & ((a_bit == 0) | (a_bit == 1))
    if not a_valid.all():
        a_idx, a_basis, a_bit = a_idx[a_valid], a_basis[a_valid], a_bit[a_valid]
    n_v, bb, bt = n[valid], b_basis[valid], b_bit[valid]
    if n_v.size == 0 or a_idx.size == 0:
        raise AlignmentError(
            "pulse offset", 0.0, min_significance, "no usable clicks or revealed pulses"
        )

    k_lo = int(pulse_offset_guess) - kmax
    n_lags = 2 * kmax + 1
    corr = np.zeros(n_lags)
    significance = 0.0
    n_fft = scipy.fft.next_fast_len(block + n_lags)
    start = int(n_v[0])
    stop = int(n_v[-1]) + 1
    peak = 0
    med = sd = 0.0
    for seg in range(start, stop, block):
        # Bob's clicks with pulse numbers in [seg, seg + block) ...
        i0, i1 = np.searchsorted(n_v, (seg, seg + block))
        # ... against Alice's revealed pulses in [seg + k_lo, seg + block + k_lo + n_lags).
        a0, a1 = np.searchsorted(a_idx, (seg + k_lo, seg + block + k_lo + n_lags))
        if i1 == i0 or a1 == a0:
            continue
        pos_b = n_v[i0:i1] - seg
        pos_a = a_idx[a0:a1] - (seg + k_lo)
        spec = np.zeros(n_fft // 2 + 1, dtype=np.complex128)
        for basis in (0, 1):
            wb = _signed(bb[i0:i1], bt[i0:i1], basis)
            wa = _signed(a_basis[a0:a1], a_bit[a0:a1], basis)
            fb = scipy.fft.rfft(np.bincount(pos_b, weights=wb, minlength=n_fft), n=n_fft)
            fa = scipy.fft.rfft(np.bincount(pos_a, weights=wa, minlength=n_fft), n=n_fft)
            spec += np.conj(fb) * fa
        corr += scipy.fft.irfft(spec, n=n_fft)[:n_lags]
        peak = int(np.argmax(corr))
        med = float(np.median(corr))
        sd = _MAD_TO_SIGMA * float(np.median(np.abs(corr - med)))
        significance = (float(corr[peak]) - med) / sd if sd > 0 else 0.0
        if significance >= stop_significance:
            break
    k_best = k_lo + peak
    # Agreement at K: look each usable click's pulse up among Alice's revealed pulses.
    agree, n_cmp = _agreement_at(k_best, n_v, bb, bt, a_idx, a_basis, a_bit)
    if not significance >= min_significance:
        raise OffsetNotFoundError(
            significance,
            min_significance,
            f"searched K in {k_lo}..{k_lo + n_lags - 1} with {n_v.size} usable clicks and "
            f"{a_idx.size} revealed pulses; at the best K {n_cmp} revealed clicks agree "
            f"{100 * agree:.1f} %",
            compared=n_cmp,
            agreement=agree,
            anti_significance=(med - float(corr.min())) / sd if sd > 0 else 0.0,
        )
    return PulseAlignment(n + k_best, grid, k_best, significance, agree, n_cmp)


# -- a periodic pattern: Bob's clicks against one period of Alice's revealed symbols --------

#: Every how many lags the background of a full-period correlation is sampled for its
#: median and spread (the peak is still searched at every lag): 1/16 of 8 M lags is 500 k
#: samples, a 0.2 % error on the spread, at 1/16 of the cost of the exact median.
_BACKGROUND_STRIDE = 16


@dataclass(frozen=True)
class PatternOffset:
    """Result of :func:`pattern_offset`: pattern position = ``(grid number + offset) mod L``.

    ``significance``/``anti_significance``: the correlation's peak height and deepest dip
    over its background (median), in robust standard deviations (1.4826 MAD); ``lags``
    the number of offsets searched; ``narrow``: found around a guess, not over the whole
    pattern.
    """

    offset: int
    significance: float
    anti_significance: float
    lags: int
    narrow: bool


def _signed32(bases: npt.NDArray[np.uint8], bits: npt.NDArray[np.uint8], basis: int) -> Any:
    """+1 for bit 0, -1 for bit 1 where ``bases == basis``, else 0 (float32)."""
    return np.where(bases == basis, np.float32(1) - np.float32(2) * bits, np.float32(0))


def _peak(corr: npt.NDArray[np.floating[Any]], stride: int) -> tuple[int, float, float]:
    """Argmax of ``corr`` and its and the minimum's distance from the median, in robust sd
    (background sampled every ``stride`` lags)."""
    sample = corr[::stride] if corr.size >= 64 * stride else corr
    med = float(np.median(sample))
    sd = _MAD_TO_SIGMA * float(np.median(np.abs(sample - med)))
    peak = int(np.argmax(corr))
    if not sd > 0:
        return peak, 0.0, 0.0
    return peak, (float(corr[peak]) - med) / sd, (med - float(corr.min())) / sd


@dataclass(frozen=True)
class _Sides:
    """Bob's clicks (grid numbers, basis, bit) and Alice's revealed symbols (positions in
    ``[0, length)``, basis, bit) of one pattern."""

    n: IntArray
    b_basis: npt.NDArray[np.uint8]
    b_bit: npt.NDArray[np.uint8]
    length: int
    a_pos: IntArray
    a_basis: npt.NDArray[np.uint8]
    a_bit: npt.NDArray[np.uint8]


def _full_pattern_offset(sides: _Sides) -> PatternOffset:
    """Every offset at once: one circular correlation of the pattern's length (float32
    FFTs: the counts are small integers, far inside float32's 24 bits)."""
    n, b_basis, b_bit, length = sides.n, sides.b_basis, sides.b_bit, sides.length
    a_pos, a_basis, a_bit = sides.a_pos, sides.a_basis, sides.a_bit
    n0 = int(n[0])
    q = np.mod(n - n0, length)
    spec: Any = 0
    for basis in (0, 1):
        b = np.zeros(length, dtype=np.float32)
        np.add.at(b, q, _signed32(b_basis, b_bit, basis))  # repeats: double clicks, wrap
        a = np.zeros(length, dtype=np.float32)
        a[a_pos] = _signed32(a_basis, a_bit, basis)  # positions are unique
        spec = spec + np.conj(scipy.fft.rfft(b)) * scipy.fft.rfft(a)
        del a, b
    corr = scipy.fft.irfft(spec, n=length)
    del spec
    # corr[k] = sum_q b[q] a[(q + k) mod L]: pattern position of grid number m is m - n0 + k.
    k, sig, anti = _peak(corr, _BACKGROUND_STRIDE)
    return PatternOffset((k - n0) % length, sig, anti, length, False)


def _narrow_pattern_offset(
    sides: _Sides, guess: int, half_width: int, block: int, stop_significance: float
) -> PatternOffset:
    """Offsets ``guess +- half_width``, correlated over blocks of ``block`` grid numbers
    until the peak reaches ``stop_significance`` or the clicks end."""
    n, b_basis, b_bit, length = sides.n, sides.b_basis, sides.b_bit, sides.length
    a_pos, a_basis, a_bit = sides.a_pos, sides.a_basis, sides.a_bit
    n_lags = 2 * half_width + 1
    if 2 * n_lags > length:
        raise TimingInputError(
            f"half_width: {half_width} lags either side of the guess cover more than half "
            f"the pattern's {length} positions (search them all instead)"
        )
    block = min(block, length - (n_lags - 1))  # a block's reach stays within one period
    span = block + n_lags - 1  # Alice's positions a block's clicks can reach
    n_fft = scipy.fft.next_fast_len(span, real=True)
    corr = np.zeros(n_lags)
    peak, sig, anti = 0, 0.0, 0.0
    for seg in range(int(n[0]), int(n[-1]) + 1, block):
        i0, i1 = np.searchsorted(n, (seg, seg + block))
        if i1 == i0:
            continue
        # Alice's revealed positions lo .. lo + span (mod L), at lo + m for lag index m.
        lo = (seg + guess - half_width) % length
        j0 = int(np.searchsorted(a_pos, lo))
        j1 = int(np.searchsorted(a_pos, lo + span))
        sel = np.arange(j0, j1)
        rel = a_pos[j0:j1] - lo
        if lo + span > length:  # the range wraps past the pattern's end
            j2 = int(np.searchsorted(a_pos, lo + span - length))
            sel = np.concatenate([sel, np.arange(0, j2)])
            rel = np.concatenate([rel, a_pos[:j2] + (length - lo)])
        if sel.size == 0:
            continue
        q = n[i0:i1] - seg
        spec: Any = 0
        for basis in (0, 1):
            wb = _signed32(b_basis[i0:i1], b_bit[i0:i1], basis)
            wa = _signed32(a_basis[sel], a_bit[sel], basis)
            fb = scipy.fft.rfft(np.bincount(q, weights=wb, minlength=n_fft).astype(np.float32))
            fa = scipy.fft.rfft(np.bincount(rel, weights=wa, minlength=n_fft).astype(np.float32))
            spec = spec + np.conj(fb) * fa
        corr += scipy.fft.irfft(spec, n=n_fft)[:n_lags]
        peak, sig, anti = _peak(corr, 1)
        if sig >= stop_significance:
            break
    return PatternOffset((guess - half_width + peak) % length, sig, anti, n_lags, True)


def pattern_offset(
    grid_numbers: npt.ArrayLike,
    bob_basis: npt.ArrayLike,
    bob_bit: npt.ArrayLike,
    pattern_length: int,
    alice_position: npt.ArrayLike,
    alice_basis: npt.ArrayLike,
    alice_bit: npt.ArrayLike,
    *,
    guess: int | None = None,
    max_pulse_offset: int = 1024,
    block_pulses: int = 1 << 16,
    stop_significance: float = 12.0,
) -> PatternOffset:
    """Offset between Bob's grid numbers and a pattern Alice plays periodically.

    Alice's generator plays ``pattern[k mod L]``; she reveals the basis and bit at some
    positions (sorted, unique, in ``[0, L)``). Bob's clicks (grid numbers nondecreasing,
    from :meth:`PulseGrid.pulse_numbers`; basis and bit 0/1) lie at pattern position
    ``(number + offset) mod L``. With ``guess`` None every offset is searched at once by
    one circular correlation of length ``L`` (all clicks: their numbers are taken modulo
    ``L``, exact for a periodic pattern); otherwise only ``guess +- max_pulse_offset``,
    correlated block by block (``block_pulses`` numbers) until the peak stands
    ``stop_significance`` over the others. The caller tests the significance.
    """
    length = positive_int(pattern_length, "pattern_length")
    n = np.asarray(grid_numbers, dtype=np.int64)
    b_basis = np.asarray(bob_basis, dtype=np.uint8)
    b_bit = np.asarray(bob_bit, dtype=np.uint8)
    a_pos = np.asarray(alice_position, dtype=np.int64)
    a_basis = np.asarray(alice_basis, dtype=np.uint8)
    a_bit = np.asarray(alice_bit, dtype=np.uint8)
    if not n.size == b_basis.size == b_bit.size:
        raise TimingInputError("bob_basis, bob_bit: one entry per grid number expected")
    if not a_pos.size == a_basis.size == a_bit.size:
        raise TimingInputError("alice_basis, alice_bit: one entry per revealed position expected")
    if a_pos.size and (a_pos[0] < 0 or a_pos[-1] >= length):
        raise TimingInputError(f"alice_position: positions must lie in [0, {length})")
    if n.size == 0 or a_pos.size == 0:
        return PatternOffset(0, 0.0, 0.0, 0, guess is not None)
    sides = _Sides(n, b_basis, b_bit, length, a_pos, a_basis, a_bit)
    if guess is None:
        return _full_pattern_offset(sides)
    return _narrow_pattern_offset(
        sides,
        int(guess),
        positive_int(max_pulse_offset, "max_pulse_offset"),
        positive_int(block_pulses, "block_pulses"),
        stop_significance,
    )
