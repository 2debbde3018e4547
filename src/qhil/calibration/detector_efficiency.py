"""Relative detection efficiencies of Bob's four detectors, from counts under mixed light.

Alice sends a fresh random pattern of the four BB84 states in equal shares. Its
average Stokes vector is zero, and stays zero through any fibre rotation, so in the
linear (low click probability) regime every analyzer port receives the same mean
light: each detector's count rate is proportional to its *port efficiency* (the
detector's efficiency times its basis's share of the receiver's splitter). Counts
under an all-vacuum pattern (if the transmitter has a vacuum intensity) are dark
counts plus background and are subtracted; an optional non-paralysable dead-time
correction ``R = R_m / (1 - R_m tau)`` undoes saturation at high rates.

Reported per detector: net count rate, relative efficiency ``r_d = N_d / mean(N)``
(sums to 4) with its standard error (Poisson counts, delta method including the
mean's correlation), and a chi-square test of "all four equal".
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from qhil.calibration.errors import CalibrationError
from qhil.calibration.reference import DETECTORS, ReferenceSource
from qhil.drivers.roles import PatternGenerator, TimeTagger

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Run-record row of one gate: what was sent, how long, the four detectors' counts.
GATE_DTYPE = np.dtype(
    [
        ("gate", np.int64),
        ("light", np.int64),  # 1 = mixed states, 0 = vacuum (background)
        ("integration_s", np.float64),
        *[(f"counts_{d.lower()}", np.int64) for d in DETECTORS],
    ]
)

GateHook = Callable[[npt.NDArray[np.void]], Awaitable[object] | None]


@dataclass(frozen=True)
class DetectorEfficiencyCalibration:
    """Relative port efficiencies of the H, V, D and A detectors (in that order)."""

    relative: F64  # N_d / mean(N): sums to 4
    relative_std: F64
    net_rate_hz: F64  # background-subtracted (and dead-time corrected) count rate
    signal_counts: I64  # summed over the light gates
    background_counts: I64  # summed over the vacuum gates (zeros if none)
    signal_s: float
    background_s: float
    chi2_equal: float  # chi-square of "all four relative efficiencies equal", 3 dof
    p_equal: float
    dead_time_s: float | None
    gates: npt.NDArray[np.void]

    @property
    def mismatch(self) -> float:
        """Largest over smallest relative efficiency."""
        return float(self.relative.max() / self.relative.min())

    def to_results(self) -> dict[str, float | int | None]:
        out: dict[str, float | int | None] = {
            "chi2_equal": self.chi2_equal,
            "p_equal": self.p_equal,
            "mismatch": self.mismatch,
            "signal_s": self.signal_s,
            "background_s": self.background_s,
            "dead_time_s": self.dead_time_s,
        }
        for i, d in enumerate(DETECTORS):
            k = d.lower()
            out[f"relative_{k}"] = float(self.relative[i])
            out[f"relative_{k}_std"] = float(self.relative_std[i])
            out[f"net_rate_{k}_hz"] = float(self.net_rate_hz[i])
            out[f"signal_counts_{k}"] = int(self.signal_counts[i])
            out[f"background_counts_{k}"] = int(self.background_counts[i])
        return out


def relative_efficiencies(
    signal: npt.ArrayLike,
    signal_s: float,
    background: npt.ArrayLike | None = None,
    background_s: float = 0.0,
    dead_time_s: float | None = None,
) -> tuple[F64, F64, F64, float]:
    """(relative, its standard error, net rates, chi-square of equality) from counts.

    Pure function of the counts: ``signal`` and ``background`` are counts per
    detector over ``signal_s`` and ``background_s`` seconds.
    """
    s = np.asarray(signal, dtype=np.float64)
    b = np.zeros_like(s) if background is None else np.asarray(background, dtype=np.float64)
    if s.shape != (4,) or b.shape != (4,):
        raise ValueError("need four counts (H, V, D, A) for signal and background")
    if signal_s <= 0 or (background is not None and background_s <= 0):
        raise ValueError("integration times must be > 0")
    rate_s, var_s = s / signal_s, s / signal_s**2
    if background is not None:
        rate_b, var_b = b / background_s, b / background_s**2
    else:
        rate_b, var_b = np.zeros(4), np.zeros(4)
    if dead_time_s is not None:
        # Non-paralysable: R = Rm / (1 - Rm tau); dR/dRm = 1 / (1 - Rm tau)^2.
        def corr(r: F64) -> tuple[F64, F64]:
            live = 1 - r * dead_time_s
            if np.any(live <= 0):
                raise ValueError("count rate beyond 1 / dead_time: not a non-paralysable detector")
            return r / live, 1 / live**2

        rate_s, ds = corr(rate_s)
        rate_b, db = corr(rate_b)
        var_s, var_b = var_s * ds**2, var_b * db**2
    net = rate_s - rate_b
    var = var_s + var_b
    total = float(net.sum())
    if not total > 0 or np.any(net <= 0):
        raise CalibrationError(
            f"no net light on some detector (net rates {np.round(net, 1).tolist()} Hz): "
            "is every detector lit and enabled?"
        )
    rel = 4 * net / total
    # r_d = 4 N_d / S: dr_d/dN_j = 4 (delta_dj S - N_d) / S^2.
    jac = 4 * (np.eye(4) * total - net[:, None]) / total**2
    rel_var = (jac**2) @ var
    if np.all(var > 0):
        # Equal rates: the weighted mean is the best common value; 3 dof remain.
        mean = float(np.sum(net / var) / np.sum(1 / var))
        chi2 = float(np.sum((net - mean) ** 2 / var))
    else:
        chi2 = math.inf
    return rel, np.sqrt(rel_var), net, chi2


async def calibrate_detector_efficiency(
    generator: PatternGenerator,
    tagger: TimeTagger,
    *,
    channel_map: Mapping[str, int],
    rep_rate_hz: float,
    intensity_index: int = 0,
    vacuum_intensity_index: int | None = None,
    pattern_length: int = 1 << 16,
    gates: int = 5,
    integration_s: float = 0.2,
    background_gates: int = 2,
    settle_s: float = 1e-3,
    dead_time_s: float | None = None,
    rng: np.random.Generator | None = None,
    on_gate: GateHook | None = None,
) -> DetectorEfficiencyCalibration:
    """Relative efficiencies of Bob's H, V, D, A detectors (``channel_map``: tagger channels).

    ``gates`` gates of ``integration_s`` each count a fresh random, equal mixture of
    H, V, D, A at ``intensity_index``; with ``vacuum_intensity_index`` (the pattern
    level whose mean photon number is zero), ``background_gates`` more gates count
    dark counts and background, which are subtracted. Prefer a low intensity (a
    decoy level): the method assumes clicks far from saturation, or give the
    detectors' ``dead_time_s`` for a correction. ``on_gate`` sees each gate's row
    (:data:`GATE_DTYPE`) as it is counted.
    """
    if gates < 1 or background_gates < 0:
        raise ValueError(
            f"need gates >= 1 and background_gates >= 0, got {gates}, {background_gates}"
        )
    if not (math.isfinite(integration_s) and integration_s > 0):
        raise ValueError(f"integration_s must be > 0, got {integration_s}")
    if not 8 <= pattern_length <= 1 << 24:
        raise ValueError(f"pattern_length must be 8..{1 << 24}, got {pattern_length}")
    if dead_time_s is not None and not dead_time_s >= 0:
        raise ValueError(f"dead_time_s must be >= 0, got {dead_time_s}")
    if vacuum_intensity_index is not None and not 0 <= vacuum_intensity_index <= 7:
        raise ValueError(f"vacuum_intensity_index must be 0..7, got {vacuum_intensity_index}")
    source = ReferenceSource(
        generator,
        tagger,
        channel_map,
        rep_rate_hz,
        pattern_length=min(pattern_length, 1 << 20),
        intensity_index=intensity_index,
        rng=rng,
    )
    rows: list[npt.NDArray[np.void]] = []

    async def gate(light: bool) -> tuple[int, int, int, int]:
        counts = await source.count(integration_s)
        row = np.zeros(1, dtype=GATE_DTYPE)
        row["gate"], row["light"], row["integration_s"] = len(rows), int(light), integration_s
        for d, n in zip(DETECTORS, counts, strict=True):
            row[f"counts_{d.lower()}"] = n
        rows.append(row)
        if on_gate is not None:
            r = on_gate(row)
            if inspect.isawaitable(r):
                await r
        return counts

    def mixed() -> npt.NDArray[np.uint8]:
        # Exactly equal shares of H, V, D, A, in a fresh random order.
        n = pattern_length - pattern_length % 4
        states = np.repeat(np.arange(4, dtype=np.uint8), n // 4)
        return (source.rng.permutation(states) | (intensity_index << 2)).astype(np.uint8)

    def vacuum() -> npt.NDArray[np.uint8]:
        assert vacuum_intensity_index is not None
        n = source.next_length()
        return np.full(n, vacuum_intensity_index << 2, dtype=np.uint8)

    signal = np.zeros(4, dtype=np.int64)
    background = np.zeros(4, dtype=np.int64)
    await generator.set_output(True)
    try:
        for _ in range(gates):
            await source.load_fresh(mixed, "mixed-state")
            await source.settle(settle_s)
            signal += np.asarray(await gate(True), dtype=np.int64)
        if vacuum_intensity_index is not None:
            for _ in range(background_gates):
                await source.load_fresh(vacuum, "vacuum")
                await source.settle(settle_s)
                background += np.asarray(await gate(False), dtype=np.int64)
    finally:
        try:
            await generator.set_output(False)
        except Exception as exc:
            log.warning("detector efficiency: could not switch the pattern generator off: %s", exc)
    signal_s = gates * integration_s
    background_s = background_gates * integration_s if vacuum_intensity_index is not None else 0.0
    rel, rel_std, net, chi2 = relative_efficiencies(
        signal,
        signal_s,
        background if background_s > 0 else None,
        background_s,
        dead_time_s,
    )
    return DetectorEfficiencyCalibration(
        relative=rel,
        relative_std=rel_std,
        net_rate_hz=net,
        signal_counts=signal,
        background_counts=background,
        signal_s=signal_s,
        background_s=background_s,
        chi2_equal=chi2,
        p_equal=float(stats.chi2.sf(chi2, 3)),
        dead_time_s=dead_time_s,
        gates=np.concatenate(rows),
    )
