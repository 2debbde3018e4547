"""Mean photon number of each intensity level as it leaves Alice's station, measured.

How a lab does it: a calibrated optical power meter on a monitor tap of the
transmitter (before its last fixed attenuator, where the light is bright enough),
with the pattern generator playing one intensity level at a time. For level ``i``

    mu_i = P_i * T / (G * E_ph * f_rep),   T = 10^(-(A + L) / 10),  G = 10^(g / 10)

with ``P_i`` the meter's mean reading, ``g`` the tap's calibrated gain onto the
meter (power at the meter over power at the transmitter's output), ``A`` the
variable attenuator's setting read from the instrument, ``L`` the calibrated loss
from the transmitter's output to Alice's output (insertion losses), ``E_ph = h c /
lambda`` and ``f_rep`` the pulse rate. Each level plays as fresh random BB84
states at that intensity (what the key exchange sends: the modulator's level may
depend on the state), and the first reading after each pattern is dropped (it may
straddle the change).

Errors (one standard deviation, combined in quadrature): the readings' scatter
(standard error of their mean), the meter's stated accuracy (taken as the
half-width of a uniform distribution: ``a / sqrt 3``; it is common to all levels),
the calibrations of ``g`` and ``L`` (standard deviations in dB) and the meter's
dark offset (an absolute term in W: no zeroing unless asked, since zeroing takes
whatever light the sensor sees). An interval at ``confidence`` is ``mu +- z sigma``
with ``z`` the two-sided normal quantile.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import constants, stats

from qhil.calibration.errors import CalibrationError
from qhil.drivers.roles import Attenuator, PatternGenerator, PowerMeter
from qhil.errors import ValidationError

F64 = npt.NDArray[np.float64]

#: Fresh random patterns tried per level before giving up (a refusal is a repeat upload).
MAX_REFUSALS = 8
DB = math.log(10.0) / 10.0  # d(ln x) per dB

#: Run-record row of one meter reading.
READING_DTYPE = np.dtype(
    [("level", np.int64), ("reading", np.int64), ("power_w", np.float64), ("kept", np.bool_)]
)

ReadingHook = Callable[[npt.NDArray[np.void]], Awaitable[object] | None]


@dataclass(frozen=True)
class MeanPhotonNumberCalibration:
    """Measured mean photon numbers per intensity level, at Alice's output."""

    mus: F64
    mus_std: F64
    power_w: F64  # mean reading per level
    power_std_w: F64  # standard error of that mean
    attenuation_db: float  # variable attenuator's setting read (0 if none)
    output_loss_db: float
    tap_gain_db: float
    confidence: float
    readings: npt.NDArray[np.void]

    @property
    def z(self) -> float:
        return float(stats.norm.ppf(0.5 + self.confidence / 2))

    def interval(self, level: int) -> tuple[float, float]:
        """Two-sided interval of level ``level``'s mu at ``confidence``."""
        half = self.z * float(self.mus_std[level])
        return float(self.mus[level]) - half, float(self.mus[level]) + half

    def disagreements(self, configured: Sequence[float]) -> list[str]:
        """One line per configured mu outside its measured interval (empty: all agree)."""
        out = []
        names = ("signal", "decoy", "vacuum")
        for i, mu in enumerate(configured):
            lo, hi = self.interval(i)
            if not lo <= mu <= hi:
                name = names[i] if len(configured) == 3 else f"level {i}"
                out.append(
                    f"{name} mu {mu:g} configured, {self.mus[i]:.4g} +- "
                    f"{self.mus_std[i]:.2g} measured ({self.confidence:.4g} interval "
                    f"[{max(lo, 0.0):.4g}, {hi:.4g}])"
                )
        return out

    def to_results(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {
            "attenuation_db": self.attenuation_db,
            "output_loss_db": self.output_loss_db,
            "tap_gain_db": self.tap_gain_db,
            "confidence": self.confidence,
            "levels": int(self.mus.size),
        }
        for i in range(self.mus.size):
            lo, hi = self.interval(i)
            out[f"mu_{i}"] = float(self.mus[i])
            out[f"mu_{i}_std"] = float(self.mus_std[i])
            out[f"mu_{i}_lo"] = lo
            out[f"mu_{i}_hi"] = hi
            out[f"power_{i}_w"] = float(self.power_w[i])
            out[f"power_{i}_std_w"] = float(self.power_std_w[i])
        return out


def photon_energy_j(wavelength_nm: float) -> float:
    return float(constants.h * constants.c / (wavelength_nm * 1e-9))


def mean_photon_numbers(
    power_w: npt.ArrayLike,
    power_std_w: npt.ArrayLike,
    *,
    rep_rate_hz: float,
    wavelength_nm: float,
    tap_gain_db: float,
    tap_gain_std_db: float,
    output_loss_db: float,
    output_loss_std_db: float,
    meter_accuracy_rel: float,
    meter_offset_w: float,
) -> tuple[F64, F64]:
    """(mu, its standard deviation) per level from the meter's mean readings (pure)."""
    p = np.asarray(power_w, dtype=np.float64)
    p_std = np.asarray(power_std_w, dtype=np.float64)
    scale = 10.0 ** (-(tap_gain_db + output_loss_db) / 10.0)
    scale /= photon_energy_j(wavelength_nm) * rep_rate_hz
    mus = p * scale
    rel_var = (meter_accuracy_rel / math.sqrt(3.0)) ** 2 + (DB * tap_gain_std_db) ** 2
    rel_var += (DB * output_loss_std_db) ** 2
    abs_var_w = p_std**2 + meter_offset_w**2
    std = np.sqrt(mus**2 * rel_var + abs_var_w * scale**2)
    return mus, std


async def calibrate_mean_photon_numbers(
    generator: PatternGenerator,
    meter: PowerMeter,
    attenuator: Attenuator | None,
    *,
    rep_rate_hz: float,
    levels: int,
    wavelength_nm: float = 1550.0,
    tap_gain_db: float,
    tap_gain_std_db: float,
    output_loss_db: float,
    output_loss_std_db: float,
    meter_accuracy_rel: float,
    meter_offset_w: float,
    readings: int = 10,
    average_count: int = 100,
    pattern_length: int = 4096,
    zero_on_level: int | None = None,
    confidence: float = 0.999,
    rng: np.random.Generator | None = None,
    on_reading: ReadingHook | None = None,
) -> MeanPhotonNumberCalibration:
    """Measure each intensity level's mean photon number at Alice's output.

    ``zero_on_level``: dark-zero the meter while that level (a vacuum level) plays
    first; only sound when that level is dark, since the zero takes its light.
    The pattern generator is left playing the last level; the caller plays the
    key exchange's patterns next.
    """
    if levels < 1 or readings < 2:
        raise ValueError("need at least one level and two readings per level")
    rng = rng if rng is not None else np.random.default_rng()
    await meter.set_wavelength_nm(wavelength_nm)
    await meter.set_averaging(average_count)
    atten_db = 0.0 if attenuator is None else float(await attenuator.attenuation_db())

    async def play(level: int) -> None:
        last: ValueError | None = None
        for _ in range(MAX_REFUSALS):
            states = rng.integers(0, 4, pattern_length, dtype=np.uint8)
            try:
                await generator.load_pattern(states | np.uint8(level << 2), rep_rate_hz)
                await generator.set_output(True)
                return
            except ValidationError:
                raise
            except ValueError as exc:  # refused (uploaded before): another random pattern
                last = exc
        raise CalibrationError(
            f"the pattern generator refused {MAX_REFUSALS} fresh patterns of level {level} "
            f"(last: {last})"
        ) from last

    if zero_on_level is not None:
        await play(zero_on_level)
        await meter.power_w()
        await meter.zero_dark()

    rows = np.zeros(levels * (readings + 1), dtype=READING_DTYPE)
    means, sems = np.zeros(levels), np.zeros(levels)
    for level in range(levels):
        await play(level)
        values = np.array([await meter.power_w() for _ in range(readings + 1)])
        block = rows[level * (readings + 1) : (level + 1) * (readings + 1)]
        block["level"], block["reading"], block["power_w"] = level, np.arange(readings + 1), values
        block["kept"] = np.arange(readings + 1) > 0  # the first may straddle the change
        if on_reading is not None:
            done = on_reading(block)
            if done is not None:
                await done
        kept = values[1:]
        means[level] = kept.mean()
        sems[level] = kept.std(ddof=1) / math.sqrt(kept.size)
    if not np.all(np.isfinite(means)):
        raise CalibrationError(f"the power meter gave non-finite readings: {means.tolist()}")
    mus, std = mean_photon_numbers(
        means,
        sems,
        rep_rate_hz=rep_rate_hz,
        wavelength_nm=wavelength_nm,
        tap_gain_db=tap_gain_db,
        tap_gain_std_db=tap_gain_std_db,
        output_loss_db=output_loss_db + atten_db,
        output_loss_std_db=output_loss_std_db,
        meter_accuracy_rel=meter_accuracy_rel,
        meter_offset_w=meter_offset_w,
    )
    return MeanPhotonNumberCalibration(
        mus=mus,
        mus_std=std,
        power_w=means,
        power_std_w=sems,
        attenuation_db=atten_db,
        output_loss_db=output_loss_db,
        tap_gain_db=tap_gain_db,
        confidence=confidence,
        readings=rows,
    )
