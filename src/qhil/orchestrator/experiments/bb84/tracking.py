"""Drift tracking during a BB84 run: the revealed subset's QBER watched block by block,
the polarization re-compensated between blocks when it rises beyond its expectation.

The fibre's polarization drifts (a random walk of its rotation); compensated once before
the first block, it is left to drift for the rest of the run. Deployed QKD systems watch
the error rate as the key exchange goes and re-align when it rises, without ending the
session. Here:

* **What is watched.** Every block, Alice reveals a random subset of her symbols (basis
  and bit) to align Bob's clicks (``alignment_fraction``); Bob's clicks on revealed
  positions in the matching basis are an error-rate sample of every basis and every
  intensity, excluded from the key and every count, that Bob has before he announces
  anything. :func:`revealed_errors` counts them per basis (Z, X) after the settling cut.
* **The test** (:class:`QberWatch`). Against an expected error fraction per basis,
  ``e0``, a block's ``k`` errors of ``n`` revealed clicks give the exact one-sided
  binomial p-value ``P(X >= k | n, e0)``; the two bases' smaller p-value times 2
  (Bonferroni) below ``tracking_significance`` triggers a re-compensation. While the
  error fraction is at most ``e0`` a block triggers with probability at most the
  significance (1e-3 by default: one false re-compensation in ~1000 blocks).
  ``e0`` is the upper bound, at the compensation's ``confidence``, of the error
  fractions the last compensation verified with its reference light (``e_Z``, ``e_X``:
  the same detectors and light, the same error rates); a stored compensation reused sets
  it per basis from the lower upper bound of the check that confirmed it
  (``polcal_check_e_z``, ``_e_x``) and of the stored compensation's own verification
  (``calibration.store.reuse.tracking_start``; its half-wave voltages are given to a
  re-compensation too); without any (compensation off) the first used block's own upper
  bounds set it. Not a fixed
  threshold: the test's reach scales with the block's counts.
* **The re-compensation** runs between blocks, after the triggering block's
  ``BlockTally`` (which carries the decision), with the search of
  :mod:`qhil.calibration.polarization` from the voltages found, through
  :mod:`qhil.calibration.remote_reference` over the same authenticated channel (so it
  is the same in one process and with ``--party``): Bob owns the controller and the
  counts, Alice makes each reference state live. The channel-level messages are
  ``polcal.*``. The half-wave voltages learned at the start are given to the search, so
  it skips the scan. No key pulse is sent meanwhile: the key exchange pauses, then goes on
  with the next block; the triggering block is counted honestly (its errors are in the
  estimates, the key length pays for them). A failed re-compensation (no light, Alice
  refused) is recorded and the run goes on at the voltages it left, the triggering block's
  level taken as expected (no retry every block); a channel failure aborts as in the
  protocol.
* **The record.** Bob writes ``bob/tracking`` for every used block (the revealed counts,
  ``e0``, the p-value, whether it triggered) and ``bob/recompensation`` for every
  re-compensation (the block and QBER that triggered it, the error fractions after, the
  counting gates it took); Alice writes ``alice/recompensation`` (block, reference
  patterns she served). The last re-compensation that met its target goes into Bob's
  results as ``polcal_tracked_*`` (:func:`tracked_polarization`): the calibration store
  reuses it rather than the start-of-run compensation.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import beta, binom

from qhil.drivers.roles import PatternGenerator, PolarizationController, TimeTagger
from qhil.orchestrator.channel import AuthenticationError, ChannelError
from qhil.orchestrator.experiments.bb84.detection import Clicks
from qhil.orchestrator.experiments.bb84.errors import AbortReason, BB84Aborted
from qhil.orchestrator.experiments.bb84.link import MessageChannel
from qhil.orchestrator.experiments.bb84.messages import AlignmentReveal

if TYPE_CHECKING:  # qhil.calibration is imported when a re-compensation runs: it is heavy
    from qhil.calibration.polarization import PolarizationCalibration
    from qhil.calibration.settings import PolarizationSettings

log = logging.getLogger(__name__)

#: Per used block (``bob/tracking``): the revealed subset's counts per basis and the test.
TRACKING_ROW = np.dtype(
    [
        ("block", np.int64),
        ("revealed_z", np.int64),
        ("errors_z", np.int64),
        ("revealed_x", np.int64),
        ("errors_x", np.int64),
        ("expected_z", np.float64),
        ("expected_x", np.float64),
        ("p_value", np.float64),
        ("triggered", np.int64),
    ]
)
#: Per re-compensation (``bob/recompensation``): why, and what it gave.
RECOMPENSATION_ROW = np.dtype(
    [
        ("block", np.int64),  # the block whose QBER triggered it (it ran after this block)
        ("qber_z", np.float64),
        ("qber_x", np.float64),
        ("expected_z", np.float64),
        ("expected_x", np.float64),
        ("p_value", np.float64),
        ("ok", np.int64),  # 0: the search failed (the run went on at the voltages left)
        ("e_z_after", np.float64),
        ("e_x_after", np.float64),
        ("target_met", np.int64),
        ("acquisitions", np.int64),  # counting gates of reference light it took
    ]
)
#: Alice's side (``alice/recompensation``).
ALICE_RECOMPENSATION_ROW = np.dtype([("block", np.int64), ("references", np.int64)])


def revealed_errors(
    clicks: Clicks, positions: np.ndarray, rev: AlignmentReveal
) -> tuple[np.ndarray, np.ndarray]:
    """Bob's clicks on revealed positions in the revealed basis: (count, errors) per basis
    (index 0 = Z, 1 = X). ``positions`` are the clicks' pattern positions (-1: none, or cut
    as the previous pattern's light)."""
    rp = rev.positions
    if rp.size == 0 or clicks.n == 0:
        zero = np.zeros(2, dtype=np.int64)
        return zero, zero.copy()
    at = np.searchsorted(rp, positions).clip(0, rp.size - 1)
    hit = (positions >= 0) & (rp[at] == positions) & (rev.bases[at] == clicks.basis)
    basis = clicks.basis[hit].astype(np.int64)
    wrong = rev.bits[at[hit]] != clicks.bit[hit]
    n = np.bincount(basis, minlength=2)[:2].astype(np.int64)
    k = np.bincount(basis[wrong], minlength=2)[:2].astype(np.int64)
    return n, k


def drift_p_value(tested: np.ndarray, errors: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """The test's p-value over the last axis (the two bases): per basis the exact one-sided
    ``P(X >= k | n, e0)`` (1 without clicks), then the smaller one times 2 (Bonferroni)."""
    n = np.asarray(tested, dtype=np.int64)
    k = np.asarray(errors, dtype=np.int64)
    p = np.where(n > 0, binom.sf(k - 1, n, expected), 1.0)  # sf(k - 1) = P(X >= k)
    return np.minimum(1.0, 2 * p.min(axis=-1))


@dataclass(frozen=True)
class Verdict:
    """One block's test against the expected error fractions."""

    block: int
    tested: tuple[int, int]  # revealed, basis-matched clicks (Z, X)
    errors: tuple[int, int]
    expected: tuple[float, float]  # e0 (NaN: this block set it)
    p_value: float  # Bonferroni over the two bases; 1 when nothing to test
    triggered: bool

    @property
    def qber(self) -> tuple[float, float]:
        return (
            self.errors[0] / self.tested[0] if self.tested[0] else math.nan,
            self.errors[1] / self.tested[1] if self.tested[1] else math.nan,
        )

    def row(self) -> dict[str, float | int]:
        return {
            "block": self.block,
            "revealed_z": self.tested[0],
            "errors_z": self.errors[0],
            "revealed_x": self.tested[1],
            "errors_x": self.errors[1],
            "expected_z": self.expected[0],
            "expected_x": self.expected[1],
            "p_value": self.p_value,
            "triggered": int(self.triggered),
        }

    def describe(self) -> str:
        qz, qx = self.qber
        return (
            f"revealed QBER Z {100 * qz:.2f} % ({self.errors[0]}/{self.tested[0]}), "
            f"X {100 * qx:.2f} % ({self.errors[1]}/{self.tested[1]}) against the expected "
            f"{100 * self.expected[0]:.2f} % / {100 * self.expected[1]:.2f} %: p = {self.p_value:.2g}"
        )


class QberWatch:
    """The one-sided test of each block's revealed QBER (module docstring)."""

    def __init__(self, significance: float, confidence: float) -> None:
        if not 0 < significance < 1 or not 0 < confidence < 1:
            raise ValueError("significance and confidence must be in (0, 1)")
        self.significance = significance
        self.confidence = confidence
        self.expected: tuple[float, float] | None = None

    def _upper(self, k: int, n: int) -> float:
        """One-sided Clopper-Pearson upper bound of k/n at the confidence."""
        return 1.0 if k >= n else float(beta.ppf(self.confidence, k + 1, n - k))

    def accept(self, verdict: Verdict) -> None:
        """Take a block's level as expected (its upper bounds, never below ``e0``): after a
        failed re-compensation, so that the next blocks trigger only if it rises further."""
        old = self.expected or (0.0, 0.0)
        self.expected = (
            max(old[0], self._upper(verdict.errors[0], verdict.tested[0])),
            max(old[1], self._upper(verdict.errors[1], verdict.tested[1])),
        )

    def expect_from(self, calibration: PolarizationCalibration) -> None:
        """``e0`` from a compensation's verification: its upper bounds at its confidence."""
        after = calibration.after
        self.expected = (
            after.e_z.upper(calibration.confidence),
            after.e_x.upper(calibration.confidence),
        )

    def check(self, block: int, tested: np.ndarray, errors: np.ndarray) -> Verdict:
        n = (int(tested[0]), int(tested[1]))
        k = (int(errors[0]), int(errors[1]))
        if self.expected is None:  # nothing verified before: this block is the reference
            if min(n) == 0:
                return Verdict(block, n, k, (math.nan, math.nan), 1.0, False)
            self.expected = (self._upper(k[0], n[0]), self._upper(k[1], n[1]))
            return Verdict(block, n, k, (math.nan, math.nan), 1.0, False)
        e0 = self.expected
        p_value = float(drift_p_value(np.asarray(n), np.asarray(k), np.asarray(e0)))
        return Verdict(block, n, k, e0, p_value, p_value < self.significance)


@dataclass
class BobTracking:
    """What Bob needs to track the drift: the compensation's settings, his controller and
    the latest compensation (the start-of-run one, then each re-compensation's: its
    verification sets ``e0``, its half-wave voltages spare the re-compensation the scan;
    a run after another with the same tracking, as in ``--continuous``, starts from it)."""

    polarization: PolarizationSettings
    controller: PolarizationController
    start: PolarizationCalibration | None = None
    # What tracking did (for the run's results, tracking_results()).
    recompensations: int = 0
    failed: int = 0
    gates: int = 0  # counting gates of reference light the re-compensations took

    def search_settings(self) -> PolarizationSettings:
        """The re-compensation's settings: the start's learned half-wave voltages given."""
        start = self.start
        if (
            start is None
            or start.half_wave_voltages_mv is None
            or self.polarization.half_wave_voltage_mv is not None
            or not all(math.isfinite(v) and v > 0 for v in start.half_wave_voltages_mv)
        ):
            return self.polarization
        return self.polarization.model_copy(
            update={"half_wave_voltage_mv": [float(v) for v in start.half_wave_voltages_mv]}
        )


@dataclass
class AliceTracking:
    """What Alice needs to serve a re-compensation: the reference light's settings."""

    polarization: PolarizationSettings


def tracking_results(tracking: BobTracking | None) -> dict[str, int]:
    """The run's results of Bob's tracking (none without it)."""
    if tracking is None:
        return {}
    return {
        "tracking_recompensations": tracking.recompensations,
        "tracking_recompensations_failed": tracking.failed,
        "tracking_recompensation_gates": tracking.gates,
    }


def tracked_polarization(tracking: BobTracking | None) -> dict[str, float | int | str | bool]:
    """The last re-compensation that met its target, as ``polcal_tracked_*`` results: the
    calibration store takes it as the run's polarization calibration (it supersedes the
    start-of-run ``polcal_*``), so the next run's candidate is where the fibre was last
    compensated. Empty without one."""
    start = None if tracking is None or tracking.recompensations == 0 else tracking.start
    if start is None or not start.target_met:
        return {}
    return {f"polcal_tracked_{k}": v for k, v in start.to_results().items() if v is not None}


def channel_aborted(party: str, exc: Exception) -> BB84Aborted:
    """A channel failure during a re-compensation aborts as in the protocol."""
    if isinstance(exc, AuthenticationError):
        return BB84Aborted(AbortReason.AUTHENTICATION_FAILED, str(exc))
    return BB84Aborted(
        AbortReason.CHANNEL_FAILED,
        f"{party}: channel failed during a polarization re-compensation: {exc}",
    )


async def recompensate_bob(
    tracking: BobTracking,
    watch: QberWatch,
    verdict: Verdict,
    channel: MessageChannel,
    tagger: TimeTagger,
    timeout_s: float,
) -> dict[str, float | int]:
    """Bob's side of one re-compensation; returns its ``bob/recompensation`` row.

    A failed search (CalibrationError) goes on with the triggering block's level as ``e0``
    (:meth:`QberWatch.accept`); channel errors raise :class:`BB84Aborted`.
    """
    from qhil.calibration.errors import CalibrationError
    from qhil.calibration.remote_reference import compensate_with_remote_reference

    qz, qx = verdict.qber
    row: dict[str, float | int] = {
        "block": verdict.block,
        "qber_z": qz,
        "qber_x": qx,
        "expected_z": verdict.expected[0],
        "expected_x": verdict.expected[1],
        "p_value": verdict.p_value,
        "ok": 0,
    }
    log.warning(
        "bb84 bob: block %d: %s; re-compensating the polarization",
        verdict.block,
        verdict.describe(),
    )
    try:
        result = await compensate_with_remote_reference(
            channel, tagger, tracking.controller, tracking.search_settings(), timeout_s=timeout_s
        )
    except CalibrationError as exc:
        log.warning("bb84 bob: polarization re-compensation failed, going on: %s", exc)
        watch.accept(verdict)  # no retry every block: only a further rise triggers again
        tracking.failed += 1
        return row
    except (ChannelError, ConnectionError, AuthenticationError) as exc:
        raise channel_aborted("bob", exc) from exc
    if result is None:  # pragma: no cover - settings are given, so it compensates
        return row
    watch.expect_from(result)
    tracking.start = result  # the latest compensation: a later run with this tracking starts here
    tracking.recompensations += 1
    tracking.gates += result.acquisitions
    row.update(
        ok=1,
        e_z_after=result.after.e_z.value,
        e_x_after=result.after.e_x.value,
        target_met=int(result.target_met),
        acquisitions=result.acquisitions,
    )
    return row


async def recompensate_alice(
    tracking: AliceTracking | None,
    block: int,
    channel: MessageChannel,
    generator: PatternGenerator,
    timeout_s: float,
    rng: np.random.Generator | None = None,
) -> dict[str, float | int]:
    """Alice's side: serve Bob's reference requests; returns her ``alice/recompensation`` row.

    ``rng`` picks the reference patterns' fresh lengths (public; Alice's own generator, so
    a run seeded for a test replays).

    Without tracking settings she refuses (Bob is told and goes on); a failed search goes
    on too; channel errors raise :class:`BB84Aborted`.
    """
    from qhil.calibration.errors import CalibrationError
    from qhil.calibration.remote_reference import serve_remote_reference

    ps = None if tracking is None else tracking.polarization
    row: dict[str, float | int] = {"block": block, "references": 0}
    try:
        report = await serve_remote_reference(channel, generator, ps, timeout_s=timeout_s, rng=rng)
    except CalibrationError as exc:
        log.warning("bb84 alice: polarization re-compensation failed, going on: %s", exc)
        return row
    except (ChannelError, ConnectionError, AuthenticationError) as exc:
        raise channel_aborted("alice", exc) from exc
    if report is not None:
        row["references"] = report.references
    return row


__all__ = [
    "ALICE_RECOMPENSATION_ROW",
    "RECOMPENSATION_ROW",
    "TRACKING_ROW",
    "AliceTracking",
    "BobTracking",
    "QberWatch",
    "Verdict",
    "recompensate_alice",
    "recompensate_bob",
    "revealed_errors",
    "tracked_polarization",
    "tracking_results",
]
