"""Quantum-memory characterisation: efficiency, fidelity, T1 and T2 against storage time.

Measured through the memory controller, never read from it: at each storage time ``t``
the controller's sequencer runs ``cycles`` store / read-out-after-``t`` cycles of each of
the six Pauli eigenstates H, V, D, A, R, L, and the polarization analyser after the
memory's output counts the retrieved photons in the state's own basis (QMC-1
``QMEMory:CYCLe?``, docs/protocols/qhil-qmc.md). From the counts:

- efficiency ``eta(t)`` = retrieved / cycles (all six inputs), fitted
  ``eta0 exp(-t / tau)``;
- average fidelity ``F(t)`` = mean over the six inputs of P(click at the input's own port)
  (the six states are a spherical 2-design, so this is the Bloch-sphere average);
- population contrast ``dz(t) = z_H - z_V`` (``z`` the Z component of the retrieved Bloch
  vector), fitted ``a1 exp(-t / T1)``: amplitude damping moves both towards the same
  pole, so the difference decays with T1 alone, whatever the initial depolarization or
  the read-out bit flip;
- coherence ``c(t)`` = mean over D, A, R, L of the Bloch component along the stored state,
  fitted ``a2 exp(-t / T2)`` (T2 includes T1's share, as the world's channel does).

Fits are weighted least squares with binomial errors, re-weighted once with the errors
the first fit predicts (measured errors would pull the curve towards low-count points);
each fit reports its parameters, their 1-sigma errors (``absolute_sigma``) and the
chi-square p-value. The storage cutoff is lifted for the measurement and restored after,
as are the read-out delay and the input.

The storage times come from what the memory shows: a coarse scan (few cycles) starts at
``span`` times the shortest decay time the controller states (or ``scan_start_s``) and,
while neither the efficiency nor the coherence has fallen to 1/e of its value at 0,
extends the storage time fourfold, up to the longest the calibration may spend
(``max_storage_time_s``, at most the controller's maximum read-out delay). A quantity
that does not decay measurably within the longest storage time (its fitted decay rate
less than ``MEASURABLE_SIGMA`` errors from 0: e.g. T1 = 1 h measured over seconds) gets
a one-sided lower bound at the stated ``confidence`` instead of a value:
``1 / (max(rate, 0) + z rate_std)``, recorded as ``<node>_t1_lower_s`` with
``<node>_t1_lower_cl`` (the store and the plot show "T1 > 41 s (95 %)").

Results follow the calibration store's convention (``<node>_t1_s`` with
``<node>_t1_std_s``, ...), so ``qhil calibrate history memory`` shows them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qhil.calibration.errors import CalibrationError
from qhil.calibration.jobs import CalibrationSummary, _recorded
from qhil.drivers.qhil.qmc import MAX_READOUT_DELAY_S, CycleCounts
from qhil.drivers.roles import QuantumMemory
from qhil.errors import ConfigError
from qhil.orchestrator.bench import Bench, BenchLookupError
from qhil.records import Run

#: The stored states and the analyser basis / correct port of each.
INPUTS = ("H", "V", "D", "A", "R", "L")
BASES = ("Z", "Z", "X", "X", "Y", "Y")
CORRECT_PORT = np.array([0, 1, 0, 1, 0, 1])
#: A decay is measured (a time with its error) when its fitted rate is this many 1-sigma
#: errors above 0 (the time then known to 1/3 or better); otherwise a lower bound.
MEASURABLE_SIGMA = 3.0
#: The coarse scan extends the storage time by this factor until something decayed.
SCAN_FACTOR = 4.0
#: The shortest storage time the scan tries (s) before it gives up.
MIN_SCAN_S = 1e-9
_E1 = math.exp(-1.0)
#: One row per (node, storage time, input): what the sequencer counted.
POINT_DTYPE = np.dtype(
    [
        ("node", np.int16),  # index into the run's ``nodes`` result
        ("storage_time_s", np.float64),
        ("input", np.int8),  # index into INPUTS
        ("cycles", np.int64),
        ("stored", np.int64),
        ("port0", np.int64),
        ("port1", np.int64),
    ]
)


@runtime_checkable
class MeasuringMemory(Protocol):
    """A quantum-memory controller with an analyser on its output and a cycle sequencer
    (QMC-1 offers it; see docs/protocols/qhil-qmc.md)."""

    async def cycle(self, mode: int, count: int) -> CycleCounts: ...

    async def set_input(self, state: str) -> None: ...

    async def get_input(self) -> str: ...

    async def set_analyzer(self, basis: str) -> None: ...

    async def set_readout_delay_s(self, seconds: float) -> None: ...

    async def get_readout_delay_s(self) -> float: ...

    async def set_cutoff_s(self, seconds: float) -> None: ...

    async def get_cutoff_s(self) -> float: ...

    async def nominal_times_s(self) -> tuple[float, float, float]: ...


class MemorySettings(BaseModel):
    """``[experiments.calibration.memory]`` of a profile."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    NAME: ClassVar[str] = "memory"

    nodes: list[str] | None = Field(
        None, description="Nodes whose memory to characterise; None = every node with one."
    )
    memory: str | None = Field(
        None, description="Instrument name of the QuantumMemory; None = the node's only one."
    )
    mode: int = Field(0, ge=0, lt=64, description="Memory mode the cycles use.")
    storage_times_s: list[float] | None = Field(
        None,
        description="Storage times (s); None = `points` from 0 to the longest storage time "
        "the coarse scan chose (`span` times the shortest finite decay time the controller "
        "states, extended while nothing has decayed).",
    )
    points: int = Field(8, ge=3, le=64, description="Storage times when chosen automatically.")
    span: float = Field(3.0, gt=0.0, le=50.0, description="Longest storage time / decay time.")
    cycles: int = Field(
        2000, ge=1, le=1_000_000, description="Store/read-out cycles per input and storage time."
    )
    max_storage_time_s: float = Field(
        MAX_READOUT_DELAY_S,
        gt=0.0,
        le=MAX_READOUT_DELAY_S,
        description="Longest storage time the calibration may spend (s; at most the "
        "controller's maximum read-out delay): what decays slower gets a lower bound.",
    )
    scan_start_s: float = Field(
        1e-3,
        gt=0.0,
        le=MAX_READOUT_DELAY_S,
        description="First storage time of the coarse scan when the controller states no "
        "finite decay time (s).",
    )
    scan_cycles: int = Field(
        400, ge=10, le=1_000_000, description="Cycles per input of each coarse-scan point."
    )
    confidence: float = Field(
        0.95,
        gt=0.5,
        lt=1.0,
        description="Confidence of the one-sided lower bound on a time that did not decay "
        "measurably.",
    )

    @field_validator("storage_times_s")
    @classmethod
    def _check_times(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if len(v) < 3:
            raise ValueError("needs at least 3 storage times (2 fit parameters)")
        if any(not (0.0 <= t <= 1000.0) for t in v):
            raise ValueError("storage times must lie in 0 .. 1000 s")
        return sorted(v)

    @classmethod
    def table(cls) -> str:
        return "experiments.calibration.memory"

    @classmethod
    def from_profile(cls, profile: Any, nodes: Sequence[str] | None = None) -> MemorySettings:
        source = getattr(profile, "source", "") or "<profile>"
        calib = (getattr(profile, "experiments", {}) or {}).get("calibration") or {}
        own = calib.get("memory") or {} if isinstance(calib, dict) else None
        if not isinstance(own, dict):
            raise ConfigError(source, cls.table(), "must be a table")
        data = dict(own)
        where = {k: cls.table() for k in data}
        if nodes:
            data["nodes"], where["nodes"] = list(nodes), "--node"
        try:
            settings = cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            parts = [str(x) for x in first["loc"]]
            table = where.get(parts[0], cls.table()) if parts else cls.table()
            msg = str(first["msg"]).removeprefix("Value error, ")
            raise ConfigError(source, ".".join([table, *parts]), msg) from None
        known = list(getattr(profile, "nodes", {}) or {})
        for node in settings.nodes or ():
            if known and node not in known:
                field = "--node" if nodes else f"{cls.table()}.nodes"
                raise ConfigError(source, field, f"no node {node!r} ({', '.join(known)})")
        return settings


def storage_times(settings: MemorySettings, nominal_s: Sequence[float]) -> list[float]:
    """The storage times to measure: the settings' own, else evenly from 0 to ``span``
    times the shortest finite stated decay time (the coarse scan's first guess,
    :func:`choose_storage_times`), at most ``max_storage_time_s``."""
    if settings.storage_times_s is not None:
        return list(settings.storage_times_s)
    finite = [t for t in nominal_s if math.isfinite(t) and t > 0]
    if not finite:
        raise CalibrationError(
            "the controller states no finite decay time to choose storage times from: "
            "set experiments.calibration.memory.storage_times_s"
        )
    t_max = min(settings.span * min(finite), settings.max_storage_time_s)
    return [float(t) for t in np.linspace(0.0, t_max, settings.points)]


def decay_ratio(rows: npt.NDArray[Any], t_s: float, node_index: int = 0) -> float:
    """How much of the faster-decaying of efficiency and coherence is left at ``t_s``
    (value there / value at 0, from a coarse scan's rows); 0 when nothing came back."""
    e = estimates(rows, node_index)
    i0, it = int(np.argmin(e.t_s)), int(np.argmin(np.abs(e.t_s - t_s)))
    if not (e.efficiency[i0] > 0):
        raise CalibrationError("no photon retrieved at storage time 0: nothing to measure")
    ratios = [e.efficiency[it] / e.efficiency[i0]]
    if e.coherence[i0] > 0:  # a memory that keeps no coherence at all: efficiency alone
        ratios.append(e.coherence[it] / e.coherence[i0])
    finite = [float(r) for r in ratios if np.isfinite(r)]
    return min(finite) if len(finite) == len(ratios) else 0.0


async def choose_storage_times(
    memory: MeasuringMemory,
    settings: MemorySettings,
    nominal_s: Sequence[float],
    *,
    node_index: int = 0,
    on_point: Callable[[npt.NDArray[Any]], Awaitable[object]] | None = None,
) -> list[float]:
    """The storage times to measure, chosen from what the memory shows.

    The settings' own times when given. Otherwise a coarse scan (``scan_cycles`` per
    input) measures at 0 and at ``span`` times the shortest stated decay time (or
    ``scan_start_s``): if neither efficiency nor coherence has fallen to 1/e there, the
    storage time grows by ``SCAN_FACTOR`` until one has, or ``max_storage_time_s`` is
    reached. The grid is ``points`` times from 0 to the first guess when that showed the
    decay, else to ``span`` times the decay time the last scan point shows (or to the
    longest allowed time: what has not decayed there gets a lower bound). ``on_point``
    sees the scan's rows (recorded as the run's ``scan``).
    """
    if settings.storage_times_s is not None:
        return list(settings.storage_times_s)
    cap = settings.max_storage_time_s
    stated = any(math.isfinite(t) and t > 0 for t in nominal_s)
    if stated:
        first = storage_times(settings, nominal_s)
    else:
        first = [float(t) for t in np.linspace(0.0, min(settings.scan_start_s, cap), 2)]
    t = first[-1]

    async def probe(times: list[float]) -> npt.NDArray[Any]:
        return await measure_memory(
            memory,
            times,
            cycles=settings.scan_cycles,
            mode=settings.mode,
            node_index=node_index,
            on_point=on_point,
        )

    rows = await probe([0.0, t])
    ratio = decay_ratio(rows, t, node_index)
    if stated and (ratio <= _E1 or t >= cap):  # the stated time was right (or too long)
        return first
    if ratio <= _E1:  # nothing stated and decayed already: shorter, until it has not
        decayed = t
        while ratio <= _E1:
            if t <= MIN_SCAN_S:
                raise CalibrationError(
                    f"the memory has decayed within {t:.3g} s: "
                    "set experiments.calibration.memory.storage_times_s"
                )
            decayed, t = t, t / SCAN_FACTOR
            rows = np.concatenate([rows, await probe([t])])
            ratio = decay_ratio(rows, t, node_index)
        t = decayed  # the shortest scan time at which it had decayed
        ratio = decay_ratio(rows, t, node_index)
    while ratio > _E1 and t < cap:
        t = min(t * SCAN_FACTOR, cap)
        rows = np.concatenate([rows, await probe([t])])
        ratio = decay_ratio(rows, t, node_index)
    if ratio > _E1:  # not even 1/e within the longest allowed time: bounds
        t_max = cap
    else:  # decayed since the scan's previous point: about 1 .. SCAN_FACTOR decay times
        tau = t / -math.log(max(ratio, math.exp(-2.0 * SCAN_FACTOR)))
        t_max = min(settings.span * tau, cap)
    return [float(x) for x in np.linspace(0.0, t_max, settings.points)]


async def measure_memory(
    memory: MeasuringMemory,
    times_s: Sequence[float],
    *,
    cycles: int,
    mode: int = 0,
    node_index: int = 0,
    on_point: Callable[[npt.NDArray[Any]], Awaitable[object]] | None = None,
) -> npt.NDArray[Any]:
    """Count the six inputs' retrieved photons at each storage time (rows of POINT_DTYPE).

    The cutoff is lifted (a storage time past it would only measure the cutoff), then the
    cutoff, read-out delay and input are restored whatever happens.
    """
    saved = (await memory.get_cutoff_s(), await memory.get_readout_delay_s())
    saved_input = await memory.get_input()
    rows = np.zeros(len(times_s) * len(INPUTS), dtype=POINT_DTYPE)
    try:
        await memory.set_cutoff_s(math.inf)
        for i, t in enumerate(times_s):
            await memory.set_readout_delay_s(float(t))
            block = rows[i * len(INPUTS) : (i + 1) * len(INPUTS)]
            for j, (state, basis) in enumerate(zip(INPUTS, BASES, strict=True)):
                await memory.set_input(state)
                await memory.set_analyzer(basis)
                counts = await memory.cycle(mode, cycles)
                block[j] = (node_index, t, j, counts.cycles, counts.stored, *counts[2:])
            if on_point is not None:
                await on_point(block.copy())
    finally:
        await memory.set_cutoff_s(saved[0])
        await memory.set_readout_delay_s(saved[1])
        await memory.set_input(saved_input)
    return rows


# --- analysis (pure numpy/scipy; the plots use it on the recorded rows) -------------------


@dataclass(frozen=True)
class Estimates:
    """Per storage time: the measured quantities and their 1-sigma binomial errors."""

    t_s: npt.NDArray[np.float64]
    cycles: npt.NDArray[np.int64]  # all inputs
    retrieved: npt.NDArray[np.int64]  # per time, per input: (n_t, 6)
    correct: npt.NDArray[np.int64]  # per time, per input: (n_t, 6)
    efficiency: npt.NDArray[np.float64]
    efficiency_std: npt.NDArray[np.float64]
    fidelity: npt.NDArray[np.float64]  # Bloch-sphere average
    fidelity_std: npt.NDArray[np.float64]
    contrast: npt.NDArray[np.float64]  # z_H - z_V
    contrast_std: npt.NDArray[np.float64]
    coherence: npt.NDArray[np.float64]  # mean over D, A, R, L of the Bloch component
    coherence_std: npt.NDArray[np.float64]

    @property
    def p_correct(self) -> npt.NDArray[np.float64]:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(self.correct / self.retrieved, dtype=float)


def _smoothed_var(k: npt.NDArray[Any], n: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Binomial variance of k/n with p pulled off 0 and 1 (a rule-of-succession p), so
    that a point with no errors still has a finite weight; inf where n is 0."""
    n = np.asarray(n, dtype=float)
    p = (np.asarray(k, dtype=float) + 0.5) / (n + 1.0)
    with np.errstate(divide="ignore"):
        return np.where(n > 0, p * (1.0 - p) / np.maximum(n, 1.0), np.inf)


def estimates(rows: npt.NDArray[Any], node_index: int = 0) -> Estimates:
    """Per-time estimates from one node's rows (any order)."""
    own = rows[rows["node"] == node_index]
    t_s = np.unique(own["storage_time_s"])
    if t_s.size == 0:
        raise CalibrationError(f"no measurements of node #{node_index}")
    ti = np.searchsorted(t_s, own["storage_time_s"])
    shape = (t_s.size, len(INPUTS))
    retrieved = np.zeros(shape, dtype=np.int64)
    correct = np.zeros(shape, dtype=np.int64)
    cycles = np.zeros(shape, dtype=np.int64)
    got = own["port0"] + own["port1"]
    right = np.where(CORRECT_PORT[own["input"]] == 0, own["port0"], own["port1"])
    np.add.at(retrieved, (ti, own["input"]), got)
    np.add.at(correct, (ti, own["input"]), right)
    np.add.at(cycles, (ti, own["input"]), own["cycles"])
    n_all, k_all = cycles.sum(axis=1), retrieved.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        eff = k_all / n_all
        p = correct / retrieved  # NaN where nothing came back
    var = _smoothed_var(correct, retrieved)
    contrast = 2.0 * (p[:, 0] + p[:, 1]) - 2.0
    coherence = np.mean(2.0 * p[:, 2:] - 1.0, axis=1)
    return Estimates(
        t_s=t_s,
        cycles=n_all,
        retrieved=retrieved,
        correct=correct,
        efficiency=eff,
        efficiency_std=np.sqrt(_smoothed_var(k_all, n_all)),
        fidelity=np.mean(p, axis=1),
        fidelity_std=np.sqrt(var.sum(axis=1)) / len(INPUTS),
        contrast=contrast,
        contrast_std=2.0 * np.sqrt(var[:, 0] + var[:, 1]),
        coherence=coherence,
        coherence_std=np.sqrt(4.0 * var[:, 2:].sum(axis=1)) / 4.0,
    )


@dataclass(frozen=True)
class DecayFit:
    """``amplitude * exp(-t / time_s)`` fitted to points, with 1-sigma errors.

    When the decay was not measurable (:func:`fit_decay_or_bound`), ``time_s`` and
    ``time_std_s`` are NaN and ``lower_bound_s`` holds the one-sided lower bound at
    ``confidence``; ``rate_hz`` +- ``rate_std_hz`` is then the fitted decay rate
    (``amplitude * exp(-rate t)``), which may be 0 or negative within its error.
    """

    amplitude: float
    amplitude_std: float
    time_s: float
    time_std_s: float
    chi2: float
    dof: int
    p_value: float
    lower_bound_s: float | None = None
    confidence: float | None = None
    rate_hz: float = math.nan
    rate_std_hz: float = math.nan

    @property
    def bounded(self) -> bool:
        """True when the decay time is only bounded from below."""
        return self.lower_bound_s is not None

    def __call__(self, t: npt.ArrayLike) -> npt.NDArray[np.float64]:
        x = np.asarray(t, dtype=float)
        if self.bounded:
            return np.asarray(self.amplitude * np.exp(-x * self.rate_hz))
        return np.asarray(self.amplitude * np.exp(-x / self.time_s))

    def bound_text(self, name: str) -> str:
        """``"T1 > 41.3 s (95 %)"`` for a bounded decay; the value +- error otherwise."""
        if self.bounded:
            assert self.lower_bound_s is not None and self.confidence is not None
            return f"{name} > {self.lower_bound_s:.3g} s ({self.confidence * 100:g} %)"
        return f"{name} = {self.time_s:.3g} +- {self.time_std_s:.2g} s"


Sigma = Callable[[npt.NDArray[np.float64], npt.NDArray[np.bool_]], npt.NDArray[np.float64]]
Model = Callable[..., npt.NDArray[np.float64]]


def _used_points(
    t: npt.ArrayLike, y: npt.ArrayLike, sigma_of: Sigma, what: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    t_a, y_a = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
    used = np.isfinite(y_a)
    used[used] = np.isfinite(sigma_of(y_a[used], used))
    if used.sum() < 3:
        raise CalibrationError(f"{what}: fewer than 3 storage times with retrieved photons")
    return t_a[used], y_a[used], used


def _weighted_fit(
    model: Model,
    tu: npt.NDArray[np.float64],
    yu: npt.NDArray[np.float64],
    used: npt.NDArray[np.bool_],
    sigma_of: Sigma,
    guess: tuple[float, float],
    what: str,
    jac: Model | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float, int, float]:
    """Parameters, their 1-sigma errors, chi-square, dof and p-value of a two-parameter
    weighted least-squares fit, re-weighted once at the first fit's values (``jac``: the
    model's analytic Jacobian, else finite differences)."""
    from scipy import optimize, stats

    sigma = sigma_of(yu, used)
    try:
        with warnings.catch_warnings():
            # No covariance (a flat or degenerate decay) means no error: not a calibration.
            warnings.simplefilter("error", optimize.OptimizeWarning)
            for _ in range(2):
                popt, pcov = optimize.curve_fit(
                    model,
                    tu,
                    yu,
                    p0=guess,
                    sigma=sigma,
                    absolute_sigma=True,
                    maxfev=20000,
                    **({} if jac is None else {"jac": jac}),
                )
                guess = (float(popt[0]), float(popt[1]))
                sigma = sigma_of(model(tu, *popt), used)
    except (RuntimeError, ValueError, optimize.OptimizeWarning) as exc:
        raise CalibrationError(f"{what}: the exponential fit failed ({exc})") from None
    chi2 = float(np.sum(((yu - model(tu, *popt)) / sigma) ** 2))
    dof = int(tu.size - 2)
    p_value = float(stats.chi2.sf(chi2, dof)) if dof > 0 else math.nan
    return np.asarray(popt), np.sqrt(np.diag(pcov)), chi2, dof, p_value


def fit_decay(t: npt.NDArray[Any], y: npt.NDArray[Any], sigma_of: Sigma, what: str) -> DecayFit:
    """Weighted least squares of ``a exp(-t / tau)`` over the points with a finite value.

    ``sigma_of(values, used)`` gives the errors of the used points at the given values:
    first at the measured ones, then once more at the first fit's (so that a point's
    weight does not depend on its own fluctuation)."""
    tu, yu, used = _used_points(t, y, sigma_of, what)

    def model(x: npt.NDArray[np.float64], a: float, tau: float) -> npt.NDArray[np.float64]:
        return np.asarray(a * np.exp(-x / tau))

    guess = (max(float(yu[0]), 1e-6), float(np.ptp(tu)) or 1.0)
    positive = yu > 0
    if positive.sum() >= 2 and np.ptp(tu[positive]) > 0:  # log-linear start
        slope, icept = np.polyfit(tu[positive], np.log(yu[positive]), 1)
        if slope < 0:
            guess = (math.exp(icept), -1.0 / slope)
    popt, err, chi2, dof, p_value = _weighted_fit(model, tu, yu, used, sigma_of, guess, what)
    return DecayFit(
        float(popt[0]), float(err[0]), float(popt[1]), float(err[1]), chi2, dof, p_value
    )


def fit_decay_or_bound(
    t: npt.NDArray[Any],
    y: npt.NDArray[Any],
    sigma_of: Sigma,
    what: str,
    confidence: float = 0.95,
) -> DecayFit:
    """:func:`fit_decay` when the points decay measurably, else a lower bound on the time.

    First ``a exp(-k t)`` is fitted with the rate ``k`` free (0 and negative allowed, so
    that a flat curve has a well-defined rate and error). A rate at least
    ``MEASURABLE_SIGMA`` errors above 0 is a measured decay: the time and its error come
    from :func:`fit_decay`. Otherwise the decay time is only bounded, at one-sided
    ``confidence`` (normal rate errors): ``tau > 1 / (max(k, 0) + z k_std)`` (the rate
    clipped at its physical 0, which only makes the bound more conservative).
    """
    from scipy import stats

    tu, yu, used = _used_points(t, y, sigma_of, what)
    scale = float(np.max(tu)) or 1.0  # fit in units of the longest storage time

    def model(x: npt.NDArray[np.float64], a: float, k: float) -> npt.NDArray[np.float64]:
        return np.asarray(a * np.exp(-k * x / scale))

    def jac(x: npt.NDArray[np.float64], a: float, k: float) -> npt.NDArray[np.float64]:
        # Analytic: finite differences step relative to k, which is ~0 for a flat curve.
        u = x / scale
        decay = np.exp(-k * u)
        return np.column_stack([decay, -a * u * decay])

    k0 = 0.0
    positive = yu > 0
    if positive.sum() >= 2 and np.ptp(tu[positive]) > 0:  # log-linear start
        k0 = float(np.clip(-np.polyfit(tu[positive] / scale, np.log(yu[positive]), 1)[0], -5, 50))
    guess = (float(np.max(np.abs(yu))) or 1e-6, k0)
    popt, err, chi2, dof, p_value = _weighted_fit(model, tu, yu, used, sigma_of, guess, what, jac)
    rate, rate_std = float(popt[1]) / scale + 0.0, float(err[1]) / scale  # no -0.0
    if not (math.isfinite(rate) and math.isfinite(rate_std) and rate_std > 0):
        raise CalibrationError(f"{what}: the decay rate has no finite error ({rate_std})")
    if rate > MEASURABLE_SIGMA * rate_std:
        measured = fit_decay(t, y, sigma_of, what)
        return replace(
            measured,
            rate_hz=1.0 / measured.time_s,
            rate_std_hz=measured.time_std_s / measured.time_s**2,
        )
    z = float(stats.norm.isf(1.0 - confidence))
    bound = 1.0 / (max(rate, 0.0) + z * rate_std)
    return DecayFit(
        float(popt[0]),
        float(err[0]),
        math.nan,
        math.nan,
        chi2,
        dof,
        p_value,
        lower_bound_s=bound,
        confidence=confidence,
        rate_hz=rate,
        rate_std_hz=rate_std,
    )


@dataclass(frozen=True)
class MemoryFits:
    estimates: Estimates
    efficiency: DecayFit  # eta0, tau
    t1: DecayFit  # contrast a1, T1
    t2: DecayFit  # coherence a2, T2

    def to_results(self, node: str) -> dict[str, Any]:
        """Per decay ``<node>_<name>_s`` +- ``_std_s`` when measured, else the lower bound
        ``<node>_<name>_lower_s`` with its confidence ``_lower_cl`` and the fitted rate
        ``_rate_hz`` +- ``_rate_std_hz``; amplitudes, fit p-values, the first fidelity and
        the longest storage time measured."""
        e = self.estimates
        out: dict[str, Any] = {}
        for name, fit, amp in (
            ("efficiency_decay", self.efficiency, "efficiency_0"),
            ("t1", self.t1, "contrast_0"),
            ("t2", self.t2, "coherence_0"),
        ):
            if fit.bounded:
                out[f"{node}_{name}_lower_s"] = fit.lower_bound_s
                out[f"{node}_{name}_lower_cl"] = fit.confidence
                out[f"{node}_{name}_rate_hz"] = fit.rate_hz
                out[f"{node}_{name}_rate_std_hz"] = fit.rate_std_hz
            else:
                out[f"{node}_{name}_s"] = fit.time_s
                out[f"{node}_{name}_std_s"] = fit.time_std_s
            out[f"{node}_{amp}"] = fit.amplitude
            out[f"{node}_{amp}_std"] = fit.amplitude_std
            out[f"{node}_{name}_fit_p"] = fit.p_value
        out[f"{node}_fidelity_first"] = float(e.fidelity[0])
        out[f"{node}_fidelity_first_std"] = float(e.fidelity_std[0])
        out[f"{node}_storage_time_max_s"] = float(e.t_s.max())
        return out


def _clip(p: npt.NDArray[np.float64], n: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """``p`` kept half a count (of ``n`` trials) off 0 and 1: a point with no losses or no
    errors still has an error of about one count in ``n``, not ~0."""
    floor = 0.5 / (np.asarray(n, dtype=float) + 1.0)
    return np.clip(p, floor, 1.0 - floor)


def fit_memory(rows: npt.NDArray[Any], node_index: int = 0, confidence: float = 0.95) -> MemoryFits:
    """Estimates and the three exponential fits (or lower bounds) of one node's rows.

    Errors: the efficiency is binomial over all cycles at the fitted value; the coherence
    is the mean of four components ``2p - 1`` that the channel gives one value each (D and
    A by symmetry, R and L too, a read-out bit flip only scaling the latter), so
    ``p = (1 + c) / 2`` at the fitted c; the contrast's two inputs relax towards one
    pole, so their ``p`` differ: their measured (smoothed) variances are used. A decay
    not measurable within the storage times is bounded at ``confidence``
    (:func:`fit_decay_or_bound`).
    """
    e = estimates(rows, node_index)
    n_all = e.cycles.astype(float)
    inv_coh = np.sum(1.0 / np.maximum(e.retrieved[:, 2:], 1), axis=1)
    inv_coh = np.where((e.retrieved[:, 2:] > 0).all(axis=1), inv_coh, np.inf)
    n_coh = e.retrieved[:, 2:].min(axis=1)

    def eff_sigma(y: npt.NDArray[np.float64], used: npt.NDArray[np.bool_]) -> Any:
        p = _clip(y, n_all[used])
        return np.sqrt(p * (1 - p) / n_all[used])

    def coh_sigma(y: npt.NDArray[np.float64], used: npt.NDArray[np.bool_]) -> Any:
        p = _clip((1.0 + y) / 2.0, n_coh[used])
        return 0.5 * np.sqrt(p * (1 - p) * inv_coh[used])

    def contrast_sigma(y: npt.NDArray[np.float64], used: npt.NDArray[np.bool_]) -> Any:
        return e.contrast_std[used]

    eff = fit_decay_or_bound(e.t_s, e.efficiency, eff_sigma, "efficiency", confidence)
    t1 = fit_decay_or_bound(e.t_s, e.contrast, contrast_sigma, "T1 contrast", confidence)
    t2 = fit_decay_or_bound(e.t_s, e.coherence, coh_sigma, "T2 coherence", confidence)
    return MemoryFits(e, eff, t1, t2)


# --- the recorded job ---------------------------------------------------------------------


async def run_memory_calibration(
    profile: str | Path | None = None,
    overrides: Sequence[str] = (),
    data_dir: str | Path | None = None,
    *,
    mode: str | None = None,
    nodes: Sequence[str] | None = None,
) -> CalibrationSummary:
    """Characterise each chosen node's quantum memory, recorded as ``calibration.memory``.

    The run holds the ``points`` rows (POINT_DTYPE, one per node, storage time and input,
    written as measured), the coarse scan's rows ``scan`` (same dtype; none when the
    settings give the storage times), the results ``nodes`` (comma-separated, the rows'
    node index) and per node ``<node>_t1_s``, ``<node>_t1_std_s``, ``<node>_t2_s``, ...,
    ``<node>_efficiency_decay_s``, ``<node>_efficiency_0`` with errors and fit p-values;
    a decay not measurable within the longest storage time gives
    ``<node>_<name>_lower_s`` and ``_lower_cl`` instead (:meth:`MemoryFits.to_results`).
    """

    class _Chosen:
        @staticmethod
        def from_profile(prof: Any) -> MemorySettings:
            return MemorySettings.from_profile(prof, nodes)

    async def body(bench: Bench, s: MemorySettings, run: Run) -> dict[str, Any]:
        chosen: list[tuple[str, Any]] = []
        for node in s.nodes if s.nodes is not None else list(bench.profile.nodes):
            try:
                chosen.append((node, bench.role(node, QuantumMemory, name=s.memory)))
            except BenchLookupError:
                if s.nodes is not None:  # asked for by name: say why not
                    raise
        if not chosen:
            raise ConfigError(
                bench.profile.source, "nodes", "no node of the bench has a QuantumMemory"
            )
        results: dict[str, Any] = {"nodes": ",".join(n for n, _ in chosen)}
        for index, (node, mem) in enumerate(chosen):
            if not isinstance(mem, MeasuringMemory):
                raise ConfigError(
                    bench.profile.source,
                    f"nodes.{node}.instruments",
                    f"the memory controller {type(mem).__name__} has no output analyser "
                    "and cycle sequencer (QMC-1's ANALyzer / CYCLe?) to measure with",
                )

            async def record_scan(block: npt.NDArray[Any]) -> None:
                await run.aappend("scan", block)

            async def record(block: npt.NDArray[Any]) -> None:
                await run.aappend("points", block)

            times = await choose_storage_times(
                mem, s, await mem.nominal_times_s(), node_index=index, on_point=record_scan
            )
            rows = await measure_memory(
                mem, times, cycles=s.cycles, mode=s.mode, node_index=index, on_point=record
            )
            results.update(fit_memory(rows, index, s.confidence).to_results(node))
        return results

    return await _recorded("memory", _Chosen, profile, overrides, data_dir, mode, body)


__all__ = [
    "BASES",
    "CORRECT_PORT",
    "INPUTS",
    "MEASURABLE_SIGMA",
    "POINT_DTYPE",
    "DecayFit",
    "Estimates",
    "MeasuringMemory",
    "MemoryFits",
    "MemorySettings",
    "choose_storage_times",
    "decay_ratio",
    "estimates",
    "fit_decay",
    "fit_decay_or_bound",
    "fit_memory",
    "measure_memory",
    "run_memory_calibration",
    "storage_times",
]
