"""Synthetic timestamp streams with known truth, for the timing tests.

Alice's clock is the reference (reads true time). Bob's clock reads
``C_B(t) = t + theta + drift * t``. A pair is emitted at ``e``; Alice detects it
at ``e + j_a``, Bob at ``e + L + j_b`` (true time), so Bob's timestamp minus
Alice's is ``offset + drift * t_a`` with ``offset = theta + L * (1 + drift)``
(up to drift * jitter, far below a picosecond).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qhil.numerics.timing import ClockModel

PS_PER_S = 10**12


@dataclass(frozen=True)
class PairStreams:
    a: npt.NDArray[np.int64]
    b: npt.NDArray[np.int64]
    truth: ClockModel  # t_ref = 0
    n_pairs: int
    sigma_rel_ps: float


def _to_ps(t: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    # floor, not astype: astype truncates toward zero and biases negative stamps.
    return np.floor(t).astype(np.int64)


def pair_streams(
    seed: int,
    *,
    duration_s: float = 1.0,
    pair_rate: float = 100_000.0,
    extra_a_rate: float = 0.0,
    extra_b_rate: float = 0.0,
    sigma_a_ps: float = 40.0,
    sigma_b_ps: float = 30.0,
    clock_offset_ps: float = 0.0,
    fibre_delay_ps: float = 0.0,
    drift: float = 0.0,
    heralding: float = 1.0,
) -> PairStreams:
    """Poisson pairs (plus uncorrelated singles on each side) with Gaussian jitter.

    ``heralding`` < 1 loses each photon independently on each side.
    """
    rng = np.random.default_rng(seed)
    span = duration_s * PS_PER_S
    n = rng.poisson(pair_rate * duration_s)
    e = rng.uniform(0.0, span, n)
    keep_a = rng.random(n) < heralding
    keep_b = rng.random(n) < heralding
    ta = e + rng.normal(0.0, sigma_a_ps, n)
    tb_true = e + fibre_delay_ps + rng.normal(0.0, sigma_b_ps, n)
    xa = rng.uniform(0.0, span, rng.poisson(extra_a_rate * duration_s))
    xb = rng.uniform(0.0, span, rng.poisson(extra_b_rate * duration_s)) + fibre_delay_ps
    ta_all = np.concatenate([ta[keep_a], xa])
    tb_all = np.concatenate([tb_true[keep_b], xb])
    tb_clock = tb_all + clock_offset_ps + drift * tb_all
    truth = ClockModel(clock_offset_ps + fibre_delay_ps * (1.0 + drift), drift, 0)
    return PairStreams(
        a=np.sort(_to_ps(ta_all)),
        b=np.sort(_to_ps(tb_clock)),
        truth=truth,
        n_pairs=int(np.count_nonzero(keep_a & keep_b)),
        sigma_rel_ps=float(np.hypot(sigma_a_ps, sigma_b_ps)),
    )


def poisson_stream(seed: int, rate: float, duration_ps: int) -> npt.NDArray[np.int64]:
    rng = np.random.default_rng(seed)
    n = rng.poisson(rate * duration_ps / PS_PER_S)
    return np.sort(rng.integers(0, duration_ps, n, dtype=np.int64))


def _mix(k: npt.NDArray[np.int64], salt: int) -> npt.NDArray[np.uint64]:
    """splitmix64 of (index, salt): Alice's per-pulse random choices, any index on demand."""
    with np.errstate(over="ignore"):
        z = k.astype(np.uint64) + np.uint64(salt) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def alice_choice(k: npt.NDArray[np.int64], salt: int) -> npt.NDArray[np.int64]:
    return (_mix(k, salt) & np.uint64(1)).astype(np.int64)


@dataclass(frozen=True)
class Bb84Clicks:
    times: npt.NDArray[np.int64]
    basis: npt.NDArray[np.int64]
    bit: npt.NDArray[np.int64]
    true_index: npt.NDArray[np.int64]  # -1 for dark counts
    revealed_index: npt.NDArray[np.int64]
    revealed_basis: npt.NDArray[np.int64]
    revealed_bit: npt.NDArray[np.int64]
    pulse0_time_ps: float  # Bob-clock time at which pulse 0 is detected (no jitter)
    drift: float


def bb84_clicks(
    seed: int,
    *,
    n_pulses: int = 20_000_000,
    period_ps: int = 10_000,
    p_click: float = 2e-3,
    drift: float = 0.0,
    offset_ps: float = 0.0,
    sigma_ps: float = 50.0,
    qber: float = 0.02,
    dark_rate: float = 2_000.0,
    revealed_fraction: float = 0.1,
    correlated: bool = True,
) -> Bb84Clicks:
    """Bob's clicks from Alice's pulses ``k * period`` (her clock), seen on Bob's clock
    ``(t) * (1 + drift) + offset``; ``correlated=False`` makes Bob's bits random."""
    rng = np.random.default_rng(seed)
    k = np.unique(rng.integers(0, n_pulses, rng.poisson(p_click * n_pulses)))
    a_basis, a_bit = alice_choice(k, 1), alice_choice(k, 2)
    b_basis = rng.integers(0, 2, k.size)
    flip = (rng.random(k.size) < qber).astype(np.int64)
    random_bit = rng.integers(0, 2, k.size)
    b_bit = np.where(b_basis == a_basis, a_bit ^ flip, random_bit) if correlated else random_bit
    t_sig = (k * float(period_ps)) * (1.0 + drift) + offset_ps + rng.normal(0, sigma_ps, k.size)
    span = n_pulses * period_ps * (1.0 + drift)
    nd = rng.poisson(dark_rate * span / PS_PER_S)
    t_dark = offset_ps + rng.uniform(0.0, span, nd)
    times = np.concatenate([t_sig, t_dark])
    order = np.argsort(times, kind="stable")
    basis = np.concatenate([b_basis, rng.integers(0, 2, nd)])[order]
    bit = np.concatenate([b_bit, rng.integers(0, 2, nd)])[order]
    truth = np.concatenate([k, np.full(nd, -1, dtype=np.int64)])[order]
    # Geometric gaps: a sorted random subset without sorting n_pulses numbers.
    gaps = rng.geometric(revealed_fraction, int(1.1 * revealed_fraction * n_pulses) + 100)
    rev = np.cumsum(gaps) - 1
    rev = rev[rev < n_pulses]
    return Bb84Clicks(
        times=_to_ps(times[order]),
        basis=basis,
        bit=bit,
        true_index=truth,
        revealed_index=rev,
        revealed_basis=alice_choice(rev, 1),
        revealed_bit=alice_choice(rev, 2),
        pulse0_time_ps=offset_ps,
        drift=drift,
    )
