"""Coincidences between two nodes' tag streams, after a clock model.

Bob's tags are mapped onto alice's timebase with a :class:`~qhil.numerics.timing.ClockModel`
(clock sync's result: offset plus frequency, the pair's path-delay difference included);
the peak of the remaining differences is then fitted for its centre and width, the window
is +-``n_sigma`` of that width, and accidentals are counted in windows displaced off the
peak (PHYSICS.md case 3: ``S_A * S_B * w`` for a CW source). Raw counts are never
accidentals-subtracted here; the estimate is reported beside them.

The coincidence window convention is :mod:`qhil.numerics.timing.coincidences`' (full width
``w``, exactly ``w`` integer ps differences). Per channel pair the counts form a 4 x 4
matrix (rows alice's H, V, D, A; columns bob's). Everything is vectorised: binary searches
and bincounts, no Python loop over events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from qhil.numerics.entanglement.errors import EntanglementInputError, NoCoincidencePeakError
from qhil.numerics.timing import ClockModel, find_coincidences

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

#: Detector order of a node's analyser (tagger inputs given in this order).
OUTCOMES = ("H", "V", "D", "A")
#: Displaced windows for the accidentals, in window widths off the peak (CW source: far
#: outside a Gaussian peak, within a few hundred ns where the singles are stationary).
SIDEBAND_STEPS = (-80, -60, -40, -20, 20, 40, 60, 80)
#: Half width searched for the peak around the model's zero, and the fit's clip.
SEARCH_HALF_PS = 10_000
_CLIP_SIGMAS = 3.0
_MIN_PEAK_PAIRS = 10


@dataclass(frozen=True)
class PeakFit:
    """Centre and width (rms, clipped at 3 sigma) of the coincidence peak, in ps."""

    delay_ps: float
    sigma_ps: float
    pairs: int


@dataclass(frozen=True)
class CrossNodeCoincidences:
    """Coincidences of one acquisition: per pair, the events and the per-channel matrix."""

    window_ps: int
    delay_ps: int
    sigma_ps: float
    duration_ps: float
    matrix: I64  # (4, 4): alice outcome x bob outcome, raw counts (accidentals included)
    accidentals: F64  # (4, 4): expected accidentals in the window, from displaced windows
    accidentals_std: F64  # (4, 4)
    singles_a: I64  # (4,)
    singles_b: I64  # (4,)
    alice_t_ps: I64  # per coincidence: alice's time
    alice_outcome: I64  # per coincidence: 0..3 (H, V, D, A)
    bob_t_ps: I64  # per coincidence: bob's time on alice's timebase
    bob_outcome: I64
    sideband_counts: I64 = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))

    @property
    def coincidences(self) -> int:
        return int(self.matrix.sum())

    @property
    def accidentals_total(self) -> float:
        return float(self.accidentals.sum())

    def predicted_accidentals(self) -> float:
        """``S_A * S_B * w * T`` from the singles (PHYSICS.md case 3), all channels."""
        t = max(self.duration_ps, 1.0)
        return float(self.singles_a.sum()) * float(self.singles_b.sum()) * self.window_ps / t


def outcome_index(channels: npt.ArrayLike, inputs: tuple[int, ...], name: str) -> I64:
    """Each tag's outcome 0..3 from its tagger input (``inputs``: H, V, D, A), -1 elsewhere."""
    if len(inputs) != len(OUTCOMES) or len(set(inputs)) != len(inputs):
        raise EntanglementInputError(
            f"{name}: need four distinct tagger inputs for H, V, D, A (got {inputs!r})"
        )
    ch = np.asarray(channels, dtype=np.int64)
    lut = np.full(max(max(inputs), int(ch.max(initial=0))) + 1, -1, dtype=np.int64)
    lut[np.asarray(inputs, dtype=np.int64)] = np.arange(len(inputs))
    return lut[np.clip(ch, 0, None)]


def fit_peak(diffs_ps: npt.ArrayLike, *, start_ps: float = 0.0) -> PeakFit:
    """Centre and rms width of a peak of time differences (iterated 3-sigma clip).

    ``diffs_ps`` are the differences of every pair within a wide search window; the flat
    background of accidentals in it is small against a pair peak (CW SPDC: ~1e-3).
    """
    d = np.asarray(diffs_ps, dtype=np.float64)
    centre = float(start_ps)
    half = float(SEARCH_HALF_PS)
    sel = d[np.abs(d - centre) < half]
    if sel.size < _MIN_PEAK_PAIRS:
        raise NoCoincidencePeakError(
            f"{sel.size} pairs within +-{half / 1e3:.0f} ns of the clock model's zero (need "
            f">= {_MIN_PEAK_PAIRS}): no coincidence peak; check the clock model and the pump"
        )
    centre = float(np.median(sel))
    for _ in range(10):
        sigma = float(sel.std()) if sel.size > 1 else 0.0
        new_half = max(_CLIP_SIGMAS * sigma, 1.0)
        sel = d[np.abs(d - centre) < new_half]
        if sel.size < _MIN_PEAK_PAIRS:
            break
        new_centre = float(sel.mean())
        if abs(new_centre - centre) < 0.5 and abs(new_half - half) < 0.5:
            break
        centre, half = new_centre, new_half
    return PeakFit(centre, float(sel.std()), int(sel.size))


def _matrix(ia: I64, ib: I64, oa: I64, ob: I64) -> I64:
    return np.bincount(oa[ia] * 4 + ob[ib], minlength=16)[:16].reshape(4, 4).astype(np.int64)


def cross_node_coincidences(
    a_t: npt.ArrayLike,
    a_ch: npt.ArrayLike,
    b_t: npt.ArrayLike,
    b_ch: npt.ArrayLike,
    model: ClockModel,
    *,
    a_inputs: tuple[int, ...] = (1, 2, 3, 4),
    b_inputs: tuple[int, ...] = (1, 2, 3, 4),
    n_sigma: float = 3.0,
    window_ps: int | None = None,
    duration_ps: float | None = None,
) -> CrossNodeCoincidences:
    """Coincidences between alice's and bob's tags after ``model`` (B = A + offset + ...).

    ``window_ps`` None: the full width is ``2 n_sigma`` times the fitted peak's rms width.
    ``duration_ps``: the common span for the singles rates (default: alice's first to
    last tag).
    """
    if not n_sigma > 0:
        raise EntanglementInputError(f"n_sigma: must be > 0 (got {n_sigma!r})")
    oa_all = outcome_index(a_ch, a_inputs, "a_inputs")
    ob_all = outcome_index(b_ch, b_inputs, "b_inputs")
    ta = np.asarray(a_t, dtype=np.int64)
    tb = np.asarray(b_t, dtype=np.int64)
    if ta.shape != oa_all.shape or tb.shape != ob_all.shape:
        raise EntanglementInputError("a_t/a_ch, b_t/b_ch: timestamps and channels differ in length")
    keep_a, keep_b = oa_all >= 0, ob_all >= 0
    ta, oa = ta[keep_a], oa_all[keep_a]
    tb, ob = model.map_b_to_a(tb[keep_b]), ob_all[keep_b]
    # Streams from a tagger are time-ordered; sort only if they are not (stable: same ties).
    if ta.size > 1 and bool(np.any(ta[1:] < ta[:-1])):
        order = np.argsort(ta, kind="stable")
        ta, oa = ta[order], oa[order]
    if tb.size > 1 and bool(np.any(tb[1:] < tb[:-1])):
        order = np.argsort(tb, kind="stable")
        tb, ob = tb[order], ob[order]
    wide = find_coincidences(ta, tb, 2 * SEARCH_HALF_PS, 0, check_sorted=False)
    peak = fit_peak(tb[wide.index_b] - ta[wide.index_a])
    if window_ps is None:
        w = max(1, math.ceil(2.0 * n_sigma * peak.sigma_ps))
    else:
        if isinstance(window_ps, bool) or int(window_ps) <= 0:
            raise EntanglementInputError(
                f"window_ps: must be a positive integer (got {window_ps!r})"
            )
        w = int(window_ps)
    delay = round(peak.delay_ps)
    pairs = find_coincidences(ta, tb, w, delay, check_sorted=False)
    matrix = _matrix(pairs.index_a, pairs.index_b, oa, ob)
    side = np.stack(
        [
            _matrix(p.index_a, p.index_b, oa, ob)
            for p in (
                find_coincidences(ta, tb, w, delay + s * w, check_sorted=False)
                for s in SIDEBAND_STEPS
            )
        ]
    )
    acc = side.mean(axis=0)
    span = (
        float(duration_ps)
        if duration_ps is not None
        else float(max(int(ta[-1]) - int(ta[0]), 1) if ta.size else 1)
    )
    return CrossNodeCoincidences(
        window_ps=w,
        delay_ps=delay,
        sigma_ps=peak.sigma_ps,
        duration_ps=span,
        matrix=matrix,
        accidentals=acc,
        # Poisson: the mean of k independent counts has variance mean / k.
        accidentals_std=np.sqrt(np.maximum(acc, 0.0) / len(SIDEBAND_STEPS)),
        singles_a=np.bincount(oa, minlength=4)[:4].astype(np.int64),
        singles_b=np.bincount(ob, minlength=4)[:4].astype(np.int64),
        alice_t_ps=ta[pairs.index_a],
        alice_outcome=oa[pairs.index_a],
        bob_t_ps=tb[pairs.index_b],
        bob_outcome=ob[pairs.index_b],
        sideband_counts=side.sum(axis=(1, 2)).astype(np.int64),
    )
