"""The `[world]` table of a bench profile: pydantic models with physical bounds.

Every model forbids unknown fields, so a typo is an error, not a silent default.
`load_world_config` turns any problem into a `qhil.errors.ConfigError` that names
the source file and the field path (``world.links.alice-bob.length_km``), and adds
the cross-reference checks pydantic cannot do alone (links to existing nodes,
optical paths through existing components in a possible order, detector wiring).
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from qhil.errors import ConfigError

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LINK_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

NonNeg = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
#: A time constant where +inf means "never" (no decay, no cutoff); NaN is still refused.
PositiveOrNever = Annotated[float, Field(gt=0.0, allow_inf_nan=True)]


class _Model(BaseModel):
    # Every float is finite unless its field says otherwise: inf or NaN in a physical
    # parameter (length_km = inf) would poison the model far from the field that caused it.
    model_config = ConfigDict(
        extra="forbid", validate_assignment=False, frozen=False, allow_inf_nan=False
    )


# -- sources ---------------------------------------------------------------------------------


class SyncOutputConfig(_Model):
    """An electrical sync pulse on a tagger channel for every n-th optical pulse (k % n == 0)."""

    tagger: str
    channel: int = Field(ge=0)
    every_n_pulses: int = Field(default=1, ge=1)
    # The sync travels to the tagger over this link's fibre (adds its group delay).
    link: str | None = None
    delay_ns: NonNeg = 0.0


class WeakCoherentTransmitterConfig(_Model):
    """Attenuated pulsed laser with intensity and polarization modulators (BB84 Alice)."""

    type: Literal["weak_coherent_transmitter"]
    rep_rate_hz: float = Field(gt=0.0, le=20e9)
    # Mean photon number per pulse for each intensity index, at the transmitter output,
    # when power_mw == nominal_power_mw.
    mus: list[NonNeg] = Field(min_length=1, max_length=64)
    nominal_power_mw: Positive = 1.0
    power_mw: NonNeg = 1.0
    wavelength_nm: Positive = 1550.0
    enabled: bool = True
    # First pulse time in the node's clock; pulse k leaves at t0_s + k / rep_rate_hz.
    t0_s: float = 0.0
    # Explicit pattern (symbol = bit | basis << 1 | intensity_index << 2), or a random one.
    pattern: list[int] | None = None
    random_pattern_length: int = Field(default=1 << 16, ge=1, le=1 << 26)
    intensity_probabilities: list[Probability] | None = None
    # Power ratio wanted/orthogonal polarization of the prepared states.
    polarization_extinction_ratio_db: Positive = 40.0
    # Relative standard deviation of the per-pulse mean photon number.
    intensity_noise_rel: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0
    emission_jitter_ps: NonNeg = 0.0
    path: list[str] = Field(min_length=1)
    sync_outputs: list[SyncOutputConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> WeakCoherentTransmitterConfig:
        n = len(self.mus)
        if self.intensity_probabilities is not None:
            if len(self.intensity_probabilities) != n:
                raise ValueError(
                    f"intensity_probabilities has {len(self.intensity_probabilities)} entries "
                    f"but mus has {n}"
                )
            if not math.isclose(sum(self.intensity_probabilities), 1.0, abs_tol=1e-9):
                raise ValueError("intensity_probabilities must sum to 1")
        if self.pattern is not None:
            if not self.pattern:
                raise ValueError("pattern must not be empty")
            bad = [s for s in self.pattern if not (0 <= s < 4 * n)]
            if bad:
                raise ValueError(
                    f"pattern symbol {bad[0]} is out of range: symbols are "
                    f"bit | basis<<1 | intensity_index<<2 with {n} intensities (0..{4 * n - 1})"
                )
        return self


class SPDCSourceConfig(_Model):
    """Polarization-entangled photon-pair source (SPDC), CW or pulsed."""

    type: Literal["spdc_source"]
    emission: Literal["cw", "pulsed"] = "cw"
    rep_rate_hz: Annotated[float, Field(gt=0.0, le=20e9)] | None = None
    # Schmidt number per pulse: 1 = thermal pair statistics, large = Poisson (pulsed only).
    modes: Annotated[float, Field(ge=1.0)] = 1.0
    enabled: bool = True
    pump_current_ma: NonNeg = 40.0
    max_pump_current_ma: Positive = 100.0
    threshold_current_ma: NonNeg = 20.0
    slope_mw_per_ma: Positive = 1.0
    pairs_per_s_per_mw: Positive = 1e5
    heater_temp_c: float = 35.0
    phase_match_temp_c: float = 35.0
    # Distance from the set point to the first zero of the sinc^2 tuning curve.
    phase_match_width_c: Positive = 2.0
    heater_time_constant_s: NonNeg = 0.0
    visibility: Probability = 0.98
    bell_state: Literal["phi+", "phi-", "psi+", "psi-"] = "phi+"
    noise: Literal["white", "dephased"] = "white"
    # Probability that a photon of a pair is coupled into its arm's fibre.
    heralding_efficiency_signal: Annotated[float, Field(gt=0.0, le=1.0)] = 0.3
    heralding_efficiency_idler: Annotated[float, Field(gt=0.0, le=1.0)] = 0.3
    # Per-photon spread of emission time within a pair (coherence time), sigma.
    pair_jitter_ps: NonNeg = 0.0
    # Pulsed: common timing spread of a pump pulse, sigma.
    emission_jitter_ps: NonNeg = 0.0
    wavelength_signal_nm: Positive = 810.0
    wavelength_idler_nm: Positive = 810.0
    t0_s: float = 0.0
    signal_path: list[str] = Field(min_length=1)
    idler_path: list[str] = Field(min_length=1)
    sync_outputs: list[SyncOutputConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> SPDCSourceConfig:
        if self.emission == "pulsed" and self.rep_rate_hz is None:
            raise ValueError("rep_rate_hz is required when emission = 'pulsed'")
        if self.emission == "cw" and self.sync_outputs:
            raise ValueError("sync_outputs need a pulsed source (emission = 'pulsed')")
        if self.pump_current_ma > self.max_pump_current_ma:
            raise ValueError(
                f"pump_current_ma {self.pump_current_ma} exceeds max_pump_current_ma "
                f"{self.max_pump_current_ma}"
            )
        return self


class CWLaserConfig(_Model):
    """A CW laser whose settings instruments report (it injects no photons into paths)."""

    type: Literal["cw_laser"]
    enabled: bool = False
    wavelength_nm: Positive = 1550.0
    min_wavelength_nm: Positive = 1480.0
    max_wavelength_nm: Positive = 1640.0
    power_mw: NonNeg = 1.0
    max_power_mw: Positive = 20.0

    @model_validator(mode="after")
    def _check(self) -> CWLaserConfig:
        if not self.min_wavelength_nm <= self.wavelength_nm <= self.max_wavelength_nm:
            raise ValueError(
                f"wavelength_nm {self.wavelength_nm} is outside "
                f"[{self.min_wavelength_nm}, {self.max_wavelength_nm}]"
            )
        if self.power_mw > self.max_power_mw:
            raise ValueError(f"power_mw {self.power_mw} exceeds max_power_mw {self.max_power_mw}")
        return self


class PowerMeterConfig(_Model):
    """An optical power meter (photodiode sensor) on a monitor tap of a transmitter.

    The tap (e.g. a 1 % coupler) sits before the transmitter's last fixed attenuator,
    where the light is bright enough to measure: the sensor receives the transmitter's
    output power times ``tap_gain_db``. Physics: the average power of the pattern
    the modulators play, times the sensor's true calibration error, plus its dark
    offset (removed by zeroing) and noise. See world/power_meter.py.
    """

    type: Literal["power_meter"]
    # The weak_coherent_transmitter whose light the tap samples (on this node).
    source: str
    # Power at the sensor relative to the transmitter's output, dB (tap ratio, fixed attenuator).
    tap_gain_db: float = Field(default=30.0, ge=-60.0, le=90.0)
    # Stated accuracy of the sensor's responsivity calibration (relative, the maker's bound).
    accuracy_rel: Annotated[float, Field(ge=0.0, le=0.5)] = 0.05
    # The sensor's true calibration error (relative); None = drawn uniformly within
    # +-accuracy_rel from the world's seed (a given sensor, unknown to its user).
    calibration_error_rel: Annotated[float, Field(ge=-0.5, le=0.5)] | None = None
    # Noise of one sample (rms, W) and its dark offset (W, removed by zeroing).
    noise_w: NonNeg = 2e-12
    dark_offset_w: float = Field(default=1e-11, ge=-1e-6, le=1e-6)
    # Wavelength range of the sensor's calibration (an InGaAs photodiode).
    min_wavelength_nm: Positive = 800.0
    max_wavelength_nm: Positive = 1700.0
    max_power_w: Positive = 0.02


# -- optics ----------------------------------------------------------------------------------


class AttenuatorConfig(_Model):
    type: Literal["attenuator"]
    attenuation_db: NonNeg = 0.0
    max_attenuation_db: Positive = 60.0
    insertion_loss_db: NonNeg = 0.0
    shutter_open: bool = True
    wavelength_nm: Positive = 1550.0
    delay_ns: NonNeg = 0.0

    @model_validator(mode="after")
    def _check(self) -> AttenuatorConfig:
        if self.attenuation_db > self.max_attenuation_db:
            raise ValueError(
                f"attenuation_db {self.attenuation_db} exceeds max_attenuation_db "
                f"{self.max_attenuation_db}"
            )
        return self


class PolarizationControllerConfig(_Model):
    """Voltage-driven fibre squeezers (OZ Optics EPC-400 style)."""

    type: Literal["polarization_controller"]
    n_channels: int = Field(default=4, ge=1, le=8)
    # One value for every channel, or one per channel (each squeezer has its own V_pi).
    half_wave_voltage_mv: Positive | list[Positive] = 2000.0
    max_voltage_mv: Positive = 5000.0
    voltages_mv: list[float] | None = None
    # Squeezer axes; default alternates 0 and 45 degrees.
    axes_deg: list[float] | None = None
    # Static retardance of each squeezer at 0 V.
    offset_rad: list[float] | None = None
    insertion_loss_db: NonNeg = 0.0
    delay_ns: NonNeg = 0.0

    @model_validator(mode="after")
    def _check(self) -> PolarizationControllerConfig:
        for field in ("voltages_mv", "axes_deg", "offset_rad", "half_wave_voltage_mv"):
            value = getattr(self, field)
            if isinstance(value, list) and len(value) != self.n_channels:
                raise ValueError(
                    f"{field} has {len(value)} entries but n_channels is {self.n_channels}"
                )
        if self.voltages_mv is not None:
            for v in self.voltages_mv:
                if abs(v) > self.max_voltage_mv:
                    raise ValueError(f"voltage {v} mV exceeds +-max_voltage_mv")
        return self


class WaveplateConfig(_Model):
    """A waveplate, possibly on a rotation mount (which sets ``angle_deg``, its own reading).

    The fast axis lies at ``angle_deg + zero_offset_deg`` from H: ``zero_offset_deg`` is how
    the plate sits in its mount, unknown to an experiment (what a zero calibration finds).
    """

    type: Literal["waveplate"]
    angle_deg: float = 0.0
    zero_offset_deg: float = 0.0
    retardance_waves: Positive = 0.5
    insertion_loss_db: NonNeg = 0.0
    delay_ns: NonNeg = 0.0


class AnalyzerBasisConfig(_Model):
    """One output pair of an analyzer: a PBS measuring along ``axis`` or a linear ``angle_deg``."""

    axis: Literal["HV", "DA", "RL"] | None = None
    angle_deg: float | None = None
    # Relative share of light sent to this basis by the (passive) splitter.
    weight: Positive = 1.0
    plus: str
    minus: str | None = None

    @model_validator(mode="after")
    def _check(self) -> AnalyzerBasisConfig:
        if (self.axis is None) == (self.angle_deg is None):
            raise ValueError("give exactly one of axis ('HV', 'DA', 'RL') or angle_deg")
        return self


class PolarizationAnalyzerConfig(_Model):
    """Passive basis choice (beam splitters) then a PBS per basis, each output to a detector."""

    type: Literal["polarization_analyzer"]
    bases: list[AnalyzerBasisConfig] = Field(min_length=1)
    pbs_extinction_ratio_db: Positive = 30.0
    insertion_loss_db: NonNeg = 0.0
    delay_ns: NonNeg = 0.0


class DetectorConfig(_Model):
    """Threshold single-photon detector (SPAD or SNSPD) with its bias curves."""

    type: Literal["detector"]
    bias_model: Literal["spad", "snspd"] = "spad"
    efficiency: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    # Relative change of the efficiency per day of the world's age_days (ageing, a slow
    # loss of coupling): efficiency * (1 + efficiency_drift_per_day * age_days), >= 0.
    efficiency_drift_per_day: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.0
    dark_count_rate_hz: NonNeg = 100.0
    dead_time_ns: NonNeg = 50.0
    jitter_ps: NonNeg = 50.0
    jitter_tail_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    jitter_tail_ps: NonNeg = 0.0
    afterpulse_probability: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    afterpulse_time_constant_ns: Positive = 100.0
    # Bias: volts for a SPAD, microamps for an SNSPD. efficiency and dark_count_rate_hz
    # hold at nominal_bias.
    nominal_bias: float = 50.0
    bias: float | None = None
    # SPAD: breakdown voltage. SNSPD: bias of half the plateau efficiency.
    onset_bias: float = 45.0
    max_bias: float = 80.0
    efficiency_bias_scale: Positive = 2.0
    dark_bias_scale: Positive = 1.5
    pulse_amplitude_per_bias: Positive = 0.5
    threshold_v: NonNeg = 0.05
    temperature_c: float = -40.0
    dark_doubling_c: Positive = 8.0
    enabled: bool = True
    gate_enabled: bool = False
    gate_frequency_hz: Positive = 100e6
    gate_width_ns: Positive = 2.0
    gate_delay_ns: NonNeg = 0.0
    delay_ns: NonNeg = 0.0
    tagger: str | None = None
    channel: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _check(self) -> DetectorConfig:
        if (self.tagger is None) != (self.channel is None):
            raise ValueError("give both tagger and channel, or neither")
        if self.bias_model == "spad" and self.nominal_bias <= self.onset_bias:
            raise ValueError(
                f"nominal_bias {self.nominal_bias} must be above onset_bias (breakdown) "
                f"{self.onset_bias} for a SPAD"
            )
        bias = self.nominal_bias if self.bias is None else self.bias
        if bias > self.max_bias or self.nominal_bias > self.max_bias:
            raise ValueError(f"bias {bias} exceeds max_bias {self.max_bias}")
        if self.gate_enabled and self.gate_width_ns * 1e-9 * self.gate_frequency_hz > 1.0:
            raise ValueError("gate_width_ns is longer than the gate period")
        return self


class TimeTaggerConfig(_Model):
    type: Literal["time_tagger"]
    n_channels: int = Field(default=8, ge=1, le=256)
    bin_width_ps: int = Field(default=1, ge=1, le=1_000_000)
    # Channel numbers run 1..n_channels.
    input_delays_ps: dict[int, float] = Field(default_factory=dict)
    channel_jitter_ps: NonNeg = 0.0
    channel_dead_time_ns: NonNeg = 0.0
    buffer_size: int = Field(default=1 << 24, ge=1)

    @field_validator("input_delays_ps")
    @classmethod
    def _delays(cls, value: dict[int, float]) -> dict[int, float]:
        for ch, d in value.items():
            if not math.isfinite(d):
                raise ValueError(f"input delay of channel {ch} must be finite")
        return value

    @model_validator(mode="after")
    def _check(self) -> TimeTaggerConfig:
        bad = [ch for ch in self.input_delays_ps if not 1 <= ch <= self.n_channels]
        if bad:
            raise ValueError(f"input_delays_ps names channel {bad[0]} outside 1..{self.n_channels}")
        return self


class QuantumMemoryConfig(_Model):
    """Parameters of `world.quantum.memory.MemoryParameters`, with units in the names."""

    type: Literal["quantum_memory"]
    n_modes: int = Field(default=1, ge=1)
    write_efficiency: Probability = 1.0
    read_efficiency: Probability = 1.0
    efficiency_decay_time_s: PositiveOrNever = math.inf
    efficiency_decay_shape: Positive = 1.0
    t1_s: PositiveOrNever = math.inf
    t2_s: PositiveOrNever = math.inf
    initial_fidelity: Annotated[float, Field(ge=0.5, le=1.0)] = 1.0
    cutoff_s: PositiveOrNever = math.inf
    readout_error: Probability = 0.0
    heralded_write: bool = True

    @model_validator(mode="after")
    def _check(self) -> QuantumMemoryConfig:
        if self.t2_s > 2 * self.t1_s:
            raise ValueError(f"t2_s {self.t2_s} must be <= 2 * t1_s ({2 * self.t1_s})")
        return self


class StationEavesdropperConfig(_Model):
    """Intercept-resend on one side of a heralding station: Eve measures that memory's
    photon in a random basis (Z or X) and resends her result."""

    side: Literal["a", "b"] = "a"
    fraction: Probability = 0.0


class HeraldingStationConfig(_Model):
    """Midpoint Bell-state measurement station of an elementary link between two
    quantum memories (Barrett-Kok heralding; model: docs/protocols/qhil-hsc.md)."""

    type: Literal["heralding_station"]
    memory_a: str  # the link's first end ("node.component" or a component of this node)
    memory_b: str
    length_a_km: NonNeg  # fibre from memory_a to the station
    length_b_km: NonNeg
    alpha_db_per_km: NonNeg = 0.2
    group_delay_us_per_km: Positive = 4.9
    emission_efficiency_a: Probability = 1.0  # photon emitted, collected, converted, in fibre
    emission_efficiency_b: Probability = 1.0
    detection_efficiency: Probability = 1.0
    visibility: Probability = 1.0  # two-photon interference visibility at the station
    dark_count_probability: Probability = 0.0  # per detector per attempt
    cycle_time_s: NonNeg = 0.0  # local part of an attempt (reset, emission, processing)
    eavesdropper: StationEavesdropperConfig = Field(default_factory=StationEavesdropperConfig)


ComponentConfig = Annotated[
    WeakCoherentTransmitterConfig
    | SPDCSourceConfig
    | CWLaserConfig
    | AttenuatorConfig
    | PolarizationControllerConfig
    | WaveplateConfig
    | PolarizationAnalyzerConfig
    | DetectorConfig
    | TimeTaggerConfig
    | QuantumMemoryConfig
    | PowerMeterConfig
    | HeraldingStationConfig,
    Field(discriminator="type"),
]

COMPONENT_TYPES = (
    "weak_coherent_transmitter",
    "spdc_source",
    "cw_laser",
    "attenuator",
    "polarization_controller",
    "waveplate",
    "polarization_analyzer",
    "detector",
    "time_tagger",
    "quantum_memory",
    "power_meter",
    "heralding_station",
)
PATH_ELEMENT_TYPES = ("attenuator", "polarization_controller", "waveplate")
PATH_TERMINAL_TYPES = ("polarization_analyzer", "detector")


# -- topology --------------------------------------------------------------------------------


class NodeConfig(_Model):
    clock_offset_s: float = Field(default=0.0, ge=-1e6, le=1e6)
    clock_drift_ppm: float = Field(default=0.0, ge=-1000.0, le=1000.0)
    clock_wander_ppb_per_sqrt_s: float = Field(
        default=0.0,
        ge=0.0,
        le=1000.0,
        description=(
            "Random walk of the clock's frequency from power-on: the fractional frequency is "
            "drift + W(t), std(W(t + tau) - W(t)) = this * 1e-9 * sqrt(tau / 1 s); Allan "
            "deviation sqrt(tau / 3) times that. ~1e-3 for an OCXO, ~1 for a TCXO, ~10 for "
            "a bare crystal; 0 = none."
        ),
    )
    components: dict[str, ComponentConfig] = Field(default_factory=dict)

    @field_validator("components")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not NAME_RE.match(name):
                raise ValueError(
                    f"component name {name!r} must be letters, digits and '_' (no '.' or '-')"
                )
        return value


class EavesdropperConfig(_Model):
    """Intercept-resend at the link input: Eve measures in a random BB84 basis and resends."""

    fraction: Probability = 0.0
    # Mean photon number Eve resends into the fibre; None = the intercepted pulse's mean.
    resend_mu: NonNeg | None = None


#: Longest link per kind: half the Earth's circumference of fibre; beyond the Moon in free space.
MAX_LINK_KM: dict[str, float] = {"fibre": 20_000.0, "free_space": 400_000.0}


class LinkConfig(_Model):
    a: str
    b: str
    kind: Literal["fibre", "free_space"] = "fibre"
    length_km: NonNeg
    alpha_db_per_km: NonNeg = 0.2
    insertion_loss_db: NonNeg = 0.0
    # None: 4.9 us/km for fibre, 3.3356 us/km for free space.
    group_delay_us_per_km: Positive | None = None
    delay_drift_ps_per_sqrt_s: NonNeg = 0.0
    polarization_drift_rad_per_sqrt_s: NonNeg = 0.0
    initial_polarization: Literal["identity", "random"] = "identity"
    # Unpolarized noise photons per second arriving at the link output (Raman, stray light).
    background_rate_hz: NonNeg = 0.0
    eavesdropper: EavesdropperConfig = Field(default_factory=EavesdropperConfig)

    @model_validator(mode="after")
    def _check(self) -> LinkConfig:
        if self.a == self.b:
            raise ValueError(f"a link joins two different nodes (a = b = {self.a!r})")
        return self

    @field_validator("length_km")
    @classmethod
    def _not_astronomical(cls, value: float, info: ValidationInfo) -> float:
        # The world keeps the photons in flight: a link of astronomical length (1e8 km is
        # ~8 min of fibre delay) would hold the emulator up generating them.
        kind = info.data.get("kind", "fibre")
        longest = MAX_LINK_KM[kind]
        if value > longest:
            raise ValueError(f"at most {longest:g} km for a {kind} link (got {value:g})")
        return value

    @property
    def delay_us_per_km(self) -> float:
        if self.group_delay_us_per_km is not None:
            return self.group_delay_us_per_km
        return 4.9 if self.kind == "fibre" else 3.3356


class WorldConfig(_Model):
    seed: int = Field(default=0, ge=0)
    mode: Literal["fast", "realtime"] = "fast"
    # Days since the bench was characterised (the configured values hold at day 0): what
    # drifts over days (a detector's efficiency_drift_per_day) has moved this far at power-on.
    age_days: NonNeg = 0.0
    # Grid of the slow processes (polarization and delay random walks).
    polarization_step_s: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-3
    # Longest stretch of simulated time generated in one vectorised batch.
    max_batch_s: Annotated[float, Field(gt=0.0, le=10.0)] = 0.1
    nodes: dict[str, NodeConfig] = Field(min_length=1)
    links: dict[str, LinkConfig] = Field(default_factory=dict)

    @field_validator("nodes")
    @classmethod
    def _node_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not NAME_RE.match(name):
                raise ValueError(f"node name {name!r} must be letters, digits and '_'")
        return value

    @field_validator("links")
    @classmethod
    def _link_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not LINK_NAME_RE.match(name):
                raise ValueError(f"link name {name!r} must be letters, digits, '_' and '-'")
        return value

    # -- lookups used by the world and the cross-reference checks ---------------------------

    def components(self) -> dict[str, Any]:
        """All components by qualified name ``node.component``, in config order."""
        return {
            f"{node}.{name}": comp
            for node, ncfg in self.nodes.items()
            for name, comp in ncfg.components.items()
        }

    def qualify(self, node: str, ref: str) -> str:
        """A component reference as written in ``node``'s table -> qualified name."""
        return ref if "." in ref else f"{node}.{ref}"


# -- loading ---------------------------------------------------------------------------------


def _format_loc(loc: tuple[int | str, ...]) -> str:
    parts = list(loc)
    # Discriminated unions put the tag into the location: nodes.x.components.y.<tag>.field
    for i, p in enumerate(parts):
        if p == "components" and i + 2 < len(parts) and parts[i + 2] in COMPONENT_TYPES:
            del parts[i + 2]
            break
    out = "world"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


_BOUND_WORDS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"),
    "less_than": ("<", "lt"),
}


def _format_problem(err: Any) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if kind in _BOUND_WORDS:
        sym, key = _BOUND_WORDS[kind]
        bound = ctx.get(key)
        shown = f"{bound:g}" if isinstance(bound, int | float) else str(bound)
        return f"must be {sym} {shown} (got {got!r})"
    if kind == "finite_number":
        return f"must be a finite number (got {got!r})"
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "union_tag_invalid":
        return (
            f"unknown component type {ctx.get('tag')!r} (known types: {', '.join(COMPONENT_TYPES)})"
        )
    if kind == "union_tag_not_found":
        return f"needs a 'type' (one of: {', '.join(COMPONENT_TYPES)})"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')} (got {got!r})"
    if kind == "value_error":
        msg = str(ctx.get("error", err["msg"]))
        return msg
    return f"{err['msg']} (got {got!r})"


def load_world_config(data: dict[str, Any], source: str) -> WorldConfig:
    """Validate the ``[world]`` table ``data`` read from file ``source``.

    Raises `ConfigError` naming ``source`` and the field path of the (first) problem.
    """
    if not isinstance(data, dict):
        raise ConfigError(source, "world", f"must be a table (got {type(data).__name__})")
    try:
        cfg = WorldConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        problem = _format_problem(first)
        if len(errors) > 1:
            others = "; ".join(
                f"{_format_loc(e['loc'])}: {_format_problem(e)}" for e in errors[1:4]
            )
            more = f" (+{len(errors) - 4} more)" if len(errors) > 4 else ""
            problem += f" [also: {others}{more}]"
        raise ConfigError(source, _format_loc(first["loc"]), problem) from None
    check_references(cfg, source)
    return cfg


def load_world_file(path: str | Path) -> WorldConfig:
    """Read a TOML bench profile (or world file) and validate its ``[world]`` table."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(str(p), "world", "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), "world", f"not valid TOML: {exc}") from None
    if "world" not in doc:
        raise ConfigError(str(p), "world", "the profile has no [world] table")
    return load_world_config(doc["world"], str(p))


def check_references(cfg: WorldConfig, source: str) -> None:
    """Cross-reference checks: nodes, paths, wiring. Raises `ConfigError`."""
    comps = cfg.components()

    for lname, link in cfg.links.items():
        for end in ("a", "b"):
            node = getattr(link, end)
            if node not in cfg.nodes:
                raise ConfigError(
                    source,
                    f"world.links.{lname}.{end}",
                    f"names node {node!r}, which does not exist (nodes: {', '.join(cfg.nodes)})",
                )

    def where(node: str, comp: str) -> str:
        return f"world.nodes.{node}.components.{comp}"

    used_channels: dict[tuple[str, int], str] = {}

    def claim_channel(tagger_ref: str, channel: int, node: str, field: str, owner: str) -> None:
        tq = cfg.qualify(node, tagger_ref)
        tcfg = comps.get(tq)
        if tcfg is None or tcfg.type != "time_tagger":
            raise ConfigError(
                source, field, f"names tagger {tagger_ref!r}, which is not a time_tagger component"
            )
        if not 1 <= channel <= tcfg.n_channels:
            raise ConfigError(
                source,
                field.rsplit(".", 1)[0] + ".channel",
                f"channel {channel} is outside 1..{tcfg.n_channels} of {tq}",
            )
        key = (tq, channel)
        if key in used_channels:
            raise ConfigError(
                source,
                field.rsplit(".", 1)[0] + ".channel",
                f"{tq} channel {channel} is already wired to {used_channels[key]}",
            )
        used_channels[key] = owner

    for node, ncfg in cfg.nodes.items():
        for cname, comp in ncfg.components.items():
            here = where(node, cname)
            if comp.type == "detector" and comp.tagger is not None:
                assert comp.channel is not None
                claim_channel(comp.tagger, comp.channel, node, f"{here}.tagger", f"{node}.{cname}")
            if comp.type in ("weak_coherent_transmitter", "spdc_source"):
                for i, sync in enumerate(comp.sync_outputs):
                    f = f"{here}.sync_outputs[{i}]"
                    claim_channel(sync.tagger, sync.channel, node, f"{f}.tagger", f"{node}.{cname}")
                    if sync.link is not None and sync.link not in cfg.links:
                        raise ConfigError(
                            source, f"{f}.link", f"names link {sync.link!r}, which does not exist"
                        )
            if comp.type == "polarization_analyzer":
                for i, basis in enumerate(comp.bases):
                    for port in ("plus", "minus"):
                        ref = getattr(basis, port)
                        if ref is None:
                            continue
                        q = cfg.qualify(node, ref)
                        target = comps.get(q)
                        if target is None or target.type != "detector":
                            raise ConfigError(
                                source,
                                f"{here}.bases[{i}].{port}",
                                f"names {ref!r}, which is not a detector component",
                            )
                        if q.split(".")[0] != node:
                            raise ConfigError(
                                source,
                                f"{here}.bases[{i}].{port}",
                                f"detector {q} is not on node {node!r}",
                            )
            if comp.type == "weak_coherent_transmitter":
                _check_path(cfg, source, node, comp.path, f"{here}.path")
            if comp.type == "power_meter":
                tx = comps.get(cfg.qualify(node, comp.source))
                if tx is None or tx.type != "weak_coherent_transmitter":
                    raise ConfigError(
                        source,
                        f"{here}.source",
                        f"names {comp.source!r}, which is not a weak_coherent_transmitter",
                    )
            if comp.type == "heralding_station":
                _check_station(cfg, source, node, comp, here)
            if comp.type == "spdc_source":
                _check_path(cfg, source, node, comp.signal_path, f"{here}.signal_path")
                _check_path(cfg, source, node, comp.idler_path, f"{here}.idler_path")


def _check_station(
    cfg: WorldConfig, source: str, node: str, comp: HeraldingStationConfig, here: str
) -> None:
    """A station's ends are two different quantum memories."""
    comps = cfg.components()
    ends = []
    for end in ("memory_a", "memory_b"):
        ref = getattr(comp, end)
        q = cfg.qualify(node, ref)
        target = comps.get(q)
        if target is None or target.type != "quantum_memory":
            raise ConfigError(
                source, f"{here}.{end}", f"names {ref!r}, which is not a quantum_memory component"
            )
        ends.append(q)
    if ends[0] == ends[1]:
        raise ConfigError(source, f"{here}.memory_b", f"is the same memory as memory_a ({ends[0]})")


def _check_path(cfg: WorldConfig, source: str, node: str, path: list[str], field: str) -> None:
    comps = cfg.components()
    at = node
    for i, elem in enumerate(path):
        f = f"{field}[{i}]"
        last = i == len(path) - 1
        if "." not in elem:
            link = cfg.links.get(elem)
            if link is None:
                raise ConfigError(
                    source,
                    f,
                    f"{elem!r} is neither a link nor a 'node.component' "
                    f"(links: {', '.join(cfg.links) or 'none'})",
                )
            if at not in (link.a, link.b):
                raise ConfigError(
                    source,
                    f,
                    f"link {elem!r} joins {link.a} and {link.b}, but the light is at {at}",
                )
            if last:
                raise ConfigError(source, f, "a path must end at an analyzer or a detector")
            at = link.b if at == link.a else link.a
            continue
        comp = comps.get(elem)
        if comp is None:
            raise ConfigError(source, f, f"component {elem!r} does not exist")
        cnode = elem.split(".", 1)[0]
        if cnode != at:
            raise ConfigError(
                source, f, f"component {elem} is on node {cnode}, but the light is at {at}"
            )
        if last:
            if comp.type not in PATH_TERMINAL_TYPES:
                raise ConfigError(
                    source,
                    f,
                    f"a path must end at a polarization_analyzer or detector, not {comp.type}",
                )
        elif comp.type not in PATH_ELEMENT_TYPES:
            raise ConfigError(
                source,
                f,
                f"{elem} is a {comp.type}; inside a path only "
                f"{', '.join(PATH_ELEMENT_TYPES)} and links may appear",
            )
