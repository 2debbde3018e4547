"""Role interfaces of a quantum-network bench.

Experiments and calibration routines talk only to these roles, never to a
model-specific driver and never to an emulator. A driver implements one or
more roles; ``isinstance(driver, Detector)`` works (runtime-checkable).
Units are in the method names or docstrings: nm, mW, dB, mV, V, s, ps, Hz.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt


@runtime_checkable
class Role(Protocol):
    """What every bench instrument offers."""

    name: str

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def identity(self) -> str: ...


@runtime_checkable
class PhotonSource(Role, Protocol):
    """A laser or attenuated pulsed source."""

    async def set_output(self, enabled: bool) -> None: ...

    async def output(self) -> bool: ...

    async def set_wavelength_nm(self, nm: float) -> None: ...

    async def wavelength(self) -> float:
        """Wavelength setpoint in nm."""
        ...

    async def power_mw(self) -> float:
        """Monitored optical output power."""
        ...


@runtime_checkable
class EntangledPhotonSource(Role, Protocol):
    """An SPDC pair source: pump and phase-matching temperature set the pair rate."""

    async def set_output(self, enabled: bool) -> None: ...

    async def set_pump_current_ma(self, ma: float) -> None: ...

    async def pump_current_ma(self) -> float: ...

    async def set_crystal_temperature_c(self, celsius: float) -> None: ...

    async def crystal_temperature_c(self) -> float: ...


@runtime_checkable
class Detector(Role, Protocol):
    """A single-photon detector (or a bank of them) with a counter."""

    async def set_bias(self, value: float) -> None:
        """Bias voltage (APD, V) or bias current (SNSPD, uA)."""
        ...

    async def bias(self) -> float: ...

    async def counts(self, integration_s: float) -> list[int]:
        """Counts per detector channel over one integration window."""
        ...


@dataclass
class TagBlock:
    """Time tags of one acquisition: what a real tagger delivers."""

    timestamps_ps: npt.NDArray[np.int64]
    channels: npt.NDArray[np.int16]
    lost: int = 0  # tags the instrument reports it dropped (buffer overflow)
    meta: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.timestamps_ps.size)


@runtime_checkable
class TimeTagger(Role, Protocol):
    """A time tagger / timestamp unit."""

    async def acquire(self, duration_s: float) -> TagBlock: ...

    def stream(self, duration_s: float | None, chunk_s: float) -> AsyncIterator[TagBlock]:
        """One continuous acquisition (one timebase: ps from its start) in blocks of
        ``chunk_s``; ``duration_s`` None runs until the consumer closes the iterator.
        ``meta["t_start_ps"]``/``meta["t_stop_ps"]``: the block's edges on that timebase;
        ``lost``: tags the instrument reports it dropped in the block."""
        ...

    async def set_input_delay_ps(self, channel: int, delay_ps: int) -> None: ...

    async def singles(self, integration_s: float) -> list[int]: ...


@runtime_checkable
class CoincidenceCounter(Role, Protocol):
    """A counter of singles and coincidences between inputs (e.g. Qubitekk CC1)."""

    async def counts(self, integration_s: float) -> list[int]:
        """Singles per input over one integration window."""
        ...

    async def coincidences(self, integration_s: float) -> int: ...


@runtime_checkable
class Attenuator(Role, Protocol):
    """A variable optical attenuator."""

    async def set_attenuation_db(self, db: float) -> None: ...

    async def attenuation_db(self) -> float: ...

    async def set_output(self, enabled: bool) -> None: ...


@runtime_checkable
class PowerMeter(Role, Protocol):
    """An optical power meter (a calibrated photodiode sensor), readings in W."""

    async def set_wavelength_nm(self, nm: float) -> None:
        """Wavelength the sensor's responsivity is corrected for."""
        ...

    async def set_averaging(self, samples: int) -> None:
        """Samples averaged into one reading."""
        ...

    async def zero_dark(self) -> None:
        """Take the present reading as the zero (dark zeroing)."""
        ...

    async def power_w(self) -> float:
        """One reading of the average optical power, W (zero subtracted)."""
        ...


@runtime_checkable
class PolarizationController(Role, Protocol):
    """A multi-stage polarization controller driven by voltages."""

    channels: int

    async def set_voltages_mv(self, mv: list[int]) -> None: ...

    async def voltages_mv(self) -> list[int]: ...


@runtime_checkable
class PatternGenerator(Role, Protocol):
    """An arbitrary waveform / pattern generator driving a transmitter's modulators."""

    async def load_pattern(self, symbols: npt.NDArray[np.uint8], symbol_rate_hz: float) -> None:
        """Upload a per-pulse symbol pattern (bit | basis << 1 | intensity << 2) and arm it."""
        ...

    async def set_output(self, enabled: bool) -> None: ...


@runtime_checkable
class PatternLimits(Protocol):
    """The pattern lengths a PatternGenerator model holds, symbols. Class attributes of the
    driver: a profile's model states them before any instrument is opened."""

    min_pattern_symbols: int
    max_pattern_symbols: int


@runtime_checkable
class AcquisitionLimits(Protocol):
    """A TimeTagger model's acquisitions, s: the shortest one, and the step its duration is
    rounded to. Class attributes of the driver, known from the profile's model alone."""

    min_acquisition_s: float
    acquisition_step_s: float


@runtime_checkable
class QuantumMemory(Role, Protocol):
    """A quantum memory controller."""

    async def store(self, mode: int) -> None: ...

    async def retrieve(self, mode: int) -> bool:
        """Read out a mode; True when a photon (qubit) was retrieved."""
        ...

    async def storage_time_s(self, mode: int) -> float: ...

    async def efficiency(self) -> float: ...

    async def coherence_times_s(self) -> tuple[float, float]:
        """(T1, T2)."""
        ...

    async def modes(self) -> int: ...


class Switch(Protocol):
    """An on/off setting: ``await x.get()``, ``await x.set(False)``."""

    async def get(self) -> bool: ...

    async def set(self, value: bool) -> None: ...


@runtime_checkable
class NetworkMemory(QuantumMemory, Protocol):
    """A quantum memory at a network node: operations on the qubits that heralded
    entanglement left in its modes (measure, swap, purify, teleport), and its power."""

    async def measure(self, mode: int, basis: str) -> int | None:
        """Destructive read-out in Z/X/Y: 0 (H/D/R), 1 (V/A/L); None if nothing came back."""
        ...

    async def bell_measure(self, mode1: int, mode2: int) -> str | None:
        """The Bell outcome, "phi+", "phi-", "psi+" or "psi-", or None; both modes are
        emptied (swapping)."""
        ...

    async def pauli(self, mode: int, op: str) -> None: ...

    async def purify(self, keep: int, sacrifice: int) -> int | None:
        """This node's half of a BBPSSW round: the sacrificed qubit's Z bit, or None."""
        ...

    async def twirl(self, mode: int, element: int) -> None: ...

    async def teleport(self, mode: int) -> str | None:
        """Bell measurement of the prepared input qubit with ``mode``'s qubit."""
        ...

    @property
    def power(self) -> Switch: ...


@dataclass(frozen=True)
class HeraldResult:
    """What one heralded entanglement-generation request of a station gave.

    ``bell`` is the heralded Bell state of the pair (``"psi+"`` / ``"psi-"``) and
    ``mode_a`` / ``mode_b`` the modes it occupies in the link's first / second end
    memory (None unless ``success``); ``elapsed_s`` is the time the attempts took,
    herald delivery to the ends included."""

    success: bool
    attempts: int
    bell: str | None
    mode_a: int | None
    mode_b: int | None
    elapsed_s: float


T_co = TypeVar("T_co", covariant=True)


class Readback(Protocol[T_co]):
    """A readable instrument parameter: ``await x.get()``."""

    async def get(self) -> T_co: ...


@runtime_checkable
class HeraldingStation(Role, Protocol):
    """The midpoint Bell-state measurement station of an elementary link between two
    quantum memories: attempts heralded entanglement generation until one succeeds."""

    async def entangle(self, max_attempts: int) -> HeraldResult:
        """Up to ``max_attempts`` attempts; the pair goes into each end memory's lowest
        free mode. Raises InstrumentError when an end has no free mode or is off."""
        ...

    @property
    def attempt_period_s(self) -> Readback[float]: ...

    @property
    def success_probability(self) -> Readback[float]: ...

    @property
    def ends(self) -> Readback[tuple[str, str]]: ...


@runtime_checkable
class RotationMount(Role, Protocol):
    """A motorized rotation mount (e.g. a waveplate on a Thorlabs Elliptec ELL14).

    Angles are the mount's own, in degrees from its home position: where a plate's axis
    then points is a calibration (the mount's zero), not the driver's business.
    """

    async def home(self) -> None:
        """Find the home position (angle 0); returns when the mount has stopped there."""
        ...

    async def move_to_deg(self, angle_deg: float) -> None:
        """Move to an absolute angle (any real number, taken modulo 360); returns when done."""
        ...

    async def position_deg(self) -> float:
        """The present angle in [0, 360)."""
        ...
