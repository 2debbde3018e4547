"""Passive and voltage-driven optics: attenuator, polarization controller, waveplate, analyzer."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .component import Component, db_to_transmission
from .config import (
    AttenuatorConfig,
    PolarizationAnalyzerConfig,
    PolarizationControllerConfig,
    WaveplateConfig,
)
from .polarization import (
    QUAT_IDENTITY,
    quat_mul,
    quat_to_jones,
    quat_to_matrix,
    waveplate_quat,
)

F64 = npt.NDArray[np.float64]


class Attenuator(Component):
    """Variable optical attenuator: ``attenuation_db`` plus insertion loss, and a shutter."""

    kind = "attenuator"
    cfg: AttenuatorConfig

    def reset(self) -> None:
        self._attenuation_db = self.cfg.attenuation_db
        self.shutter_open = self.cfg.shutter_open
        self._wavelength_nm = self.cfg.wavelength_nm

    @property
    def attenuation_db(self) -> float:
        return self._attenuation_db

    @attenuation_db.setter
    def attenuation_db(self, value: float) -> None:
        self._attenuation_db = self._finite(
            "attenuation_db", value, 0.0, self.cfg.max_attenuation_db
        )
        self._notify()

    @property
    def max_attenuation_db(self) -> float:
        return self.cfg.max_attenuation_db

    @property
    def insertion_loss_db(self) -> float:
        return self.cfg.insertion_loss_db

    @property
    def wavelength_nm(self) -> float:
        return self._wavelength_nm

    @wavelength_nm.setter
    def wavelength_nm(self, value: float) -> None:
        self._wavelength_nm = self._finite("wavelength_nm", value, 1e-3, 1e6)

    @property
    def transmission(self) -> float:
        if not self.shutter_open:
            return 0.0
        return db_to_transmission(self._attenuation_db + self.cfg.insertion_loss_db)

    @property
    def quat(self) -> F64:
        return QUAT_IDENTITY

    @property
    def delay_ps(self) -> float:
        return self.cfg.delay_ns * 1e3


class PolarizationController(Component):
    """Fibre squeezers driven by voltages (OZ Optics EPC-400 style).

    Channel i is a waveplate with axis ``axes_deg[i]`` (default 0, 45, 0, 45 deg) and
    retardance ``pi * V_i / half_wave_voltage_mv + offset_rad[i]``. The light passes
    channel 1 first.
    """

    kind = "polarization_controller"
    cfg: PolarizationControllerConfig

    def reset(self) -> None:
        n = self.cfg.n_channels
        self._axes = np.deg2rad(
            np.asarray(
                self.cfg.axes_deg
                if self.cfg.axes_deg is not None
                else [0.0 if i % 2 == 0 else 45.0 for i in range(n)],
                dtype=float,
            )
        )
        self._offsets = np.asarray(
            self.cfg.offset_rad if self.cfg.offset_rad is not None else np.zeros(n), dtype=float
        )
        self._voltages = np.asarray(
            self.cfg.voltages_mv if self.cfg.voltages_mv is not None else np.zeros(n), dtype=float
        )
        self._quat = self._compute_quat()

    @property
    def n_channels(self) -> int:
        return self.cfg.n_channels

    @property
    def max_voltage_mv(self) -> float:
        return self.cfg.max_voltage_mv

    @property
    def voltages_mv(self) -> F64:
        return self._voltages.copy()

    def set_voltages(self, mv: Sequence[float] | F64) -> None:
        values = np.asarray(mv, dtype=float)
        if values.shape != (self.n_channels,):
            raise self._bad("voltages_mv", list(np.ravel(values)), f"{self.n_channels} values")
        for i, v in enumerate(values):
            self._finite(f"voltages_mv[{i + 1}]", v, -self.max_voltage_mv, self.max_voltage_mv)
        self._voltages = values.copy()
        self._quat = self._compute_quat()
        self._notify()

    def set_voltage(self, channel: int, mv: float) -> None:
        """Set one channel (numbered from 1, as on the instrument)."""
        if not (isinstance(channel, int) and 1 <= channel <= self.n_channels):
            raise self._bad("channel", channel, f"an integer 1..{self.n_channels}")
        v = self._finite(f"voltages_mv[{channel}]", mv, -self.max_voltage_mv, self.max_voltage_mv)
        self._voltages[channel - 1] = v
        self._quat = self._compute_quat()
        self._notify()

    def retardances_rad(self, voltages_mv: F64 | None = None) -> F64:
        v = self._voltages if voltages_mv is None else np.asarray(voltages_mv, dtype=float)
        return math.pi * v / self.half_wave_voltages_mv + self._offsets

    @property
    def half_wave_voltages_mv(self) -> F64:
        """Each channel's half-wave voltage."""
        return np.broadcast_to(
            np.asarray(self.cfg.half_wave_voltage_mv, dtype=float), (self.n_channels,)
        )

    def quat_for(self, voltages_mv: F64) -> F64:
        plates = waveplate_quat(self._axes, self.retardances_rad(voltages_mv))
        q = QUAT_IDENTITY
        for plate in plates:
            q = quat_mul(plate, q)
        return np.asarray(q)

    def _compute_quat(self) -> F64:
        return self.quat_for(self._voltages)

    @property
    def quat(self) -> F64:
        return self._quat

    @property
    def rotation(self) -> F64:
        return quat_to_matrix(self._quat)

    @property
    def unitary(self) -> npt.NDArray[np.complex128]:
        return quat_to_jones(self._quat)

    @property
    def transmission(self) -> float:
        return db_to_transmission(self.cfg.insertion_loss_db)

    @property
    def delay_ps(self) -> float:
        return self.cfg.delay_ns * 1e3


class Waveplate(Component):
    """A (rotatable) waveplate: half-wave for retardance 0.5 waves, quarter-wave for 0.25."""

    kind = "waveplate"
    cfg: WaveplateConfig

    def reset(self) -> None:
        self._angle_deg = self.cfg.angle_deg

    @property
    def angle_deg(self) -> float:
        return self._angle_deg

    @angle_deg.setter
    def angle_deg(self, value: float) -> None:
        self._angle_deg = self._finite("angle_deg", value)
        self._notify()

    @property
    def axis_deg(self) -> float:
        """The fast axis from H: the mount's angle plus how the plate sits in it."""
        return self._angle_deg + self.cfg.zero_offset_deg

    @property
    def quat(self) -> F64:
        return waveplate_quat(math.radians(self.axis_deg), 2 * math.pi * self.cfg.retardance_waves)

    @property
    def transmission(self) -> float:
        return db_to_transmission(self.cfg.insertion_loss_db)

    @property
    def delay_ps(self) -> float:
        return self.cfg.delay_ns * 1e3


_AXES = {
    "HV": (np.array([1.0, 0, 0]), ("H", "V")),
    "DA": (np.array([0, 1.0, 0]), ("D", "A")),
    "RL": (np.array([0, 0, 1.0]), ("R", "L")),
}


@dataclass(frozen=True)
class AnalyzerOutput:
    """One detector behind an analyzer: its basis index, sign (+1/-1) and label."""

    detector: str
    basis: int
    sign: int
    label: str


class PolarizationAnalyzer(Component):
    """Passive basis choice (splitter weights) then a PBS per basis with finite extinction."""

    kind = "polarization_analyzer"
    cfg: PolarizationAnalyzerConfig

    def __init__(
        self, name: str, node: str, cfg: PolarizationAnalyzerConfig, now_s: Callable[[], float]
    ) -> None:
        super().__init__(name, node, cfg, now_s)
        weights = np.array([b.weight for b in cfg.bases], dtype=float)
        self.weights: F64 = weights / weights.sum()
        er = 10 ** (cfg.pbs_extinction_ratio_db / 10)
        # Probability that the PBS sends a photon to the wrong port.
        self.leak = 1.0 / (1.0 + er)
        outs: list[AnalyzerOutput] = []
        for i, b in enumerate(cfg.bases):
            for sign, ref in ((1, b.plus), (-1, b.minus)):
                if ref is None:
                    continue
                det = ref if "." in ref else f"{node}.{ref}"
                outs.append(AnalyzerOutput(det, i, sign, ""))
        self._outputs_raw = outs
        self.reset()

    def reset(self) -> None:
        self._angles = [b.angle_deg for b in self.cfg.bases]

    def set_basis_angle(self, index: int, angle_deg: float) -> None:
        """Rotate basis ``index``'s linear analyzer (only for bases given by angle_deg)."""
        if not (isinstance(index, int) and 0 <= index < len(self.cfg.bases)):
            raise self._bad("basis", index, f"an index 0..{len(self.cfg.bases) - 1}")
        if self.cfg.bases[index].angle_deg is None:
            raise self._bad("basis", index, "a basis configured with angle_deg (not a fixed axis)")
        self._angles[index] = self._finite("angle_deg", angle_deg)

    def basis_angle(self, index: int) -> float | None:
        return self._angles[index]

    @property
    def axes(self) -> F64:
        """Stokes axis of each basis's '+' output, shape (n_bases, 3)."""
        rows = []
        for b, ang in zip(self.cfg.bases, self._angles, strict=True):
            if b.axis is not None:
                rows.append(_AXES[b.axis][0])
            else:
                assert ang is not None
                t = math.radians(ang)
                rows.append(np.array([math.cos(2 * t), math.sin(2 * t), 0.0]))
        return np.array(rows)

    def labels(self, index: int) -> tuple[str, str]:
        b = self.cfg.bases[index]
        if b.axis is not None:
            return _AXES[b.axis][1]
        ang = self._angles[index]
        assert ang is not None
        return (f"{ang:g}", f"{ang + 90:g}")

    @property
    def outputs(self) -> list[AnalyzerOutput]:
        return [
            AnalyzerOutput(
                o.detector, o.basis, o.sign, self.labels(o.basis)[0 if o.sign > 0 else 1]
            )
            for o in self._outputs_raw
        ]

    @property
    def transmission(self) -> float:
        return db_to_transmission(self.cfg.insertion_loss_db)

    @property
    def delay_ps(self) -> float:
        return self.cfg.delay_ns * 1e3
