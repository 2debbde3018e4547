"""Light sources: weak-coherent BB84 transmitter, SPDC pair source, CW laser (settings only)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from .component import Component
from .config import CWLaserConfig, SPDCSourceConfig, WeakCoherentTransmitterConfig
from .polarization import F64

U8 = npt.NDArray[np.uint8]


class WeakCoherentTransmitter(Component):
    """Pulsed laser + intensity and polarization modulators, driven by a symbol pattern.

    Pulse k leaves at ``t0_s + k / rep_rate_hz`` in the node's clock and carries
    ``pattern[k % len(pattern)]`` (symbol = bit | basis << 1 | intensity_index << 2).
    Photon number per pulse is Poisson (phase-randomised coherent state) with mean
    ``mus[i] * power_mw / nominal_power_mw``.
    """

    kind = "weak_coherent_transmitter"
    cfg: WeakCoherentTransmitterConfig

    def __init__(
        self,
        name: str,
        node: str,
        cfg: WeakCoherentTransmitterConfig,
        now_s: Callable[[], float],
        rng: np.random.Generator,
    ) -> None:
        super().__init__(name, node, cfg, now_s)
        self._pattern_rng = rng

    def reset(self) -> None:
        self.enabled = self.cfg.enabled
        self._power_mw = self.cfg.power_mw
        self._wavelength_nm = self.cfg.wavelength_nm
        self._rep_rate_hz = self.cfg.rep_rate_hz
        self._period_ps = Fraction(10**12) / Fraction(self._rep_rate_hz)
        self._t0_ps = Fraction(self.cfg.t0_s) * 10**12
        self._mus = list(self.cfg.mus)
        if self.cfg.pattern is not None:
            self._pattern = np.asarray(self.cfg.pattern, dtype=np.uint8)
        else:
            self._pattern = self._random_pattern(self.cfg.random_pattern_length)

    def _random_pattern(self, n: int) -> U8:
        k = len(self.cfg.mus)
        probs = self.cfg.intensity_probabilities or [1.0 / k] * k
        rng = self._pattern_rng
        bits = rng.integers(0, 2, n)
        bases = rng.integers(0, 2, n)
        idx = rng.choice(k, size=n, p=probs)
        return (bits | (bases << 1) | (idx << 2)).astype(np.uint8)

    # -- settings ----------------------------------------------------------------------

    def set_pattern(self, symbols: Sequence[int] | U8) -> None:
        """Upload the modulator pattern (what a pattern generator drives)."""
        arr = np.asarray(symbols)
        if arr.ndim != 1 or arr.size == 0:
            raise self._bad("pattern", f"array of shape {arr.shape}", "a non-empty 1-D array")
        if not np.issubdtype(arr.dtype, np.integer):
            raise self._bad("pattern", f"dtype {arr.dtype}", "integer symbols")
        hi = 4 * len(self._mus)
        if arr.min() < 0 or arr.max() >= hi:
            bad = int(arr[(arr < 0) | (arr >= hi)][0])
            raise self._bad(
                "pattern",
                f"symbol {bad}",
                f"bit | basis<<1 | intensity_index<<2 with {len(self._mus)} intensities: 0..{hi - 1}",
            )
        self._pattern = arr.astype(np.uint8)

    @property
    def pattern(self) -> U8:
        return self._pattern.copy()

    @property
    def mus(self) -> list[float]:
        return list(self._mus)

    @mus.setter
    def mus(self, values: Sequence[float]) -> None:
        vals = [self._finite("mus", v, 0.0, 1e6) for v in values]
        if len(vals) != len(self._mus):
            raise self._bad("mus", list(values), f"{len(self._mus)} values (fixed by the profile)")
        self._mus = vals

    @property
    def power_mw(self) -> float:
        return self._power_mw

    @power_mw.setter
    def power_mw(self, value: float) -> None:
        self._power_mw = self._finite("power_mw", value, 0.0, 1e4)

    @property
    def wavelength_nm(self) -> float:
        return self._wavelength_nm

    @wavelength_nm.setter
    def wavelength_nm(self, value: float) -> None:
        self._wavelength_nm = self._finite("wavelength_nm", value, 1e-3, 1e6)

    @property
    def rep_rate_hz(self) -> float:
        return self._rep_rate_hz

    @rep_rate_hz.setter
    def rep_rate_hz(self, value: float) -> None:
        self._rep_rate_hz = self._finite("rep_rate_hz", value, 1.0, 20e9)
        self._period_ps = Fraction(10**12) / Fraction(self._rep_rate_hz)

    # -- physics read by the sampler -----------------------------------------------------

    @property
    def period_ps(self) -> Fraction:
        return self._period_ps

    @property
    def t0_ps(self) -> Fraction:
        return self._t0_ps

    def current_mus(self) -> F64:
        """Mean photon number per intensity index at the transmitter output, now."""
        if not self.enabled:
            return np.zeros(len(self._mus))
        scale = self._power_mw / self.cfg.nominal_power_mw
        return np.asarray(self._mus, dtype=float) * scale

    @property
    def state_contrast(self) -> float:
        """1 - 2 * (fraction of power in the orthogonal polarization)."""
        er = 10 ** (self.cfg.polarization_extinction_ratio_db / 10)
        return 1.0 - 2.0 / (1.0 + er)


class SPDCSource(Component):
    """Polarization-entangled pair source; pair rate from pump current and crystal temperature."""

    kind = "spdc_source"
    cfg: SPDCSourceConfig
    _correlations: tuple[F64, F64, F64]

    def reset(self) -> None:
        self.enabled = self.cfg.enabled
        self._current = self.cfg.pump_current_ma
        self._set_temp = self.cfg.heater_temp_c
        self._temp_at_set = self.cfg.heater_temp_c
        self._t_set = 0.0
        # The pair state is fixed by the profile: computed once, at power-on (numpy only:
        # qutip's first import takes over a second; done lazily at the first pair, it once
        # stalled an emulator's event loop mid-acquisition and a TDC1 stream came back empty).
        if not hasattr(self, "_correlations"):
            self._correlations = self._pair_correlations()

    @property
    def pump_current_ma(self) -> float:
        return self._current

    @pump_current_ma.setter
    def pump_current_ma(self, value: float) -> None:
        self._current = self._finite("pump_current_ma", value, 0.0, self.cfg.max_pump_current_ma)

    @property
    def max_pump_current_ma(self) -> float:
        return self.cfg.max_pump_current_ma

    @property
    def heater_temp_c(self) -> float:
        """Heater set point."""
        return self._set_temp

    @heater_temp_c.setter
    def heater_temp_c(self, value: float) -> None:
        v = self._finite("heater_temp_c", value, -50.0, 200.0)
        now = self._now_s()
        self._temp_at_set = self.heater_actual_at(now)
        self._t_set = now
        self._set_temp = v

    def heater_actual_at(self, t_s: float) -> float:
        tau = self.cfg.heater_time_constant_s
        if tau <= 0 or t_s <= self._t_set:
            return self._set_temp if tau <= 0 else self._temp_at_set
        w = math.exp(-(t_s - self._t_set) / tau)
        return self._set_temp + (self._temp_at_set - self._set_temp) * w

    @property
    def heater_actual_c(self) -> float:
        return self.heater_actual_at(self._now_s())

    @property
    def pump_power_mw(self) -> float:
        if not self.enabled:
            return 0.0
        return self.cfg.slope_mw_per_ma * max(0.0, self._current - self.cfg.threshold_current_ma)

    def phase_matching(self, temp_c: float) -> float:
        x = (temp_c - self.cfg.phase_match_temp_c) / self.cfg.phase_match_width_c
        return float(np.sinc(x) ** 2)

    def pair_rate_at(self, t_s: float) -> float:
        return (
            self.cfg.pairs_per_s_per_mw
            * self.pump_power_mw
            * self.phase_matching(self.heater_actual_at(t_s))
        )

    @property
    def pair_rate_hz(self) -> float:
        return self.pair_rate_at(self._now_s())

    @property
    def period_ps(self) -> Fraction:
        assert self.cfg.rep_rate_hz is not None
        return Fraction(10**12) / Fraction(self.cfg.rep_rate_hz)

    @property
    def t0_ps(self) -> Fraction:
        return Fraction(self.cfg.t0_s) * 10**12

    def correlations(self) -> tuple[F64, F64, F64]:
        """(a, b, T) of the pair's polarization state in Stokes coordinates:
        rho = (1 + a.sigma x 1 + 1 x b.sigma + sum T_ij sigma_i x sigma_j) / 4."""
        return self._correlations

    def _pair_correlations(self) -> tuple[F64, F64, F64]:
        return stokes_correlations(
            pair_density(self.cfg.visibility, self.cfg.bell_state, self.cfg.noise)
        )


#: Bell kets over |HH>, |HV>, |VH>, |VV> (the quantum package's convention, without qutip).
_BELL_KETS = {
    "phi+": np.array([1, 0, 0, 1]) / math.sqrt(2),
    "phi-": np.array([1, 0, 0, -1]) / math.sqrt(2),
    "psi+": np.array([0, 1, 1, 0]) / math.sqrt(2),
    "psi-": np.array([0, 1, -1, 0]) / math.sqrt(2),
}


def pair_density(visibility: float, bell: str, noise: str) -> npt.NDArray[np.complex128]:
    """``quantum.states.spdc_pair_state(visibility, bell, noise)`` as a numpy array.

    The same state (tests compare the two), computed without qutip: importing qutip
    costs over a second, and a bench that only needs the pair's correlations (every
    SPDC source, on every bench) should not pay it at start-up.
    """
    ket = _BELL_KETS[bell]
    projector = np.outer(ket, ket).astype(np.complex128)
    if noise == "white":
        rest = np.eye(4, dtype=np.complex128) / 4.0
    elif noise == "dephased":
        rest = np.diag(np.diag(projector))
    else:
        raise ValueError(f"noise {noise!r} is not one of white, dephased")
    return visibility * projector + (1.0 - visibility) * rest


_PAULI_STOKES = [
    np.array([[1, 0], [0, -1]], dtype=complex),
    np.array([[0, 1], [1, 0]], dtype=complex),
    np.array([[0, -1j], [1j, 0]], dtype=complex),
]


def stokes_correlations(rho: npt.NDArray[np.complex128]) -> tuple[F64, F64, F64]:
    """Local Stokes vectors and correlation tensor of a two-qubit density matrix."""
    eye = np.eye(2)
    a = np.array([np.real(np.trace(rho @ np.kron(s, eye))) for s in _PAULI_STOKES])
    b = np.array([np.real(np.trace(rho @ np.kron(eye, s))) for s in _PAULI_STOKES])
    t = np.array(
        [[np.real(np.trace(rho @ np.kron(si, sj))) for sj in _PAULI_STOKES] for si in _PAULI_STOKES]
    )
    return a, b, t


class CWLaser(Component):
    """A CW laser: settings that instruments set and report. It puts no photons into paths."""

    kind = "cw_laser"
    cfg: CWLaserConfig

    def reset(self) -> None:
        self.enabled = self.cfg.enabled
        self._wavelength_nm = self.cfg.wavelength_nm
        self._power_mw = self.cfg.power_mw

    @property
    def wavelength_nm(self) -> float:
        return self._wavelength_nm

    @wavelength_nm.setter
    def wavelength_nm(self, value: float) -> None:
        self._wavelength_nm = self._finite(
            "wavelength_nm", value, self.cfg.min_wavelength_nm, self.cfg.max_wavelength_nm
        )

    @property
    def power_mw(self) -> float:
        return self._power_mw

    @power_mw.setter
    def power_mw(self, value: float) -> None:
        self._power_mw = self._finite("power_mw", value, 0.0, self.cfg.max_power_mw)

    @property
    def output_power_mw(self) -> float:
        """Power actually emitted (0 when off)."""
        return self._power_mw if self.enabled else 0.0
