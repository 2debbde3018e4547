"""Settings of the recorded calibrations, from a bench profile.

Which instruments and how Bob's detectors are wired come from the profile's
``[experiments.bb84]`` table (the calibrations serve that link); its ``mus`` also
tell which pattern intensity level is vacuum (mean photon number 0) and which is the
weakest light. A table ``[experiments.calibration.<name>]`` (``polarization``,
``detector_efficiency``, ``delays``) may set any field of that routine, overriding::

    [experiments.calibration.polarization]
    controller = "polctrl"        # Bob's PolarizationController (None = his only one)
    target_error = 0.01
    integration_s = 2e-3

Errors name the file and the field, e.g.
``hw_profiles/default.toml: experiments.calibration.polarization.target_error: ...``
(or ``experiments.bb84.<field>`` for a value taken from there).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qhil.errors import ConfigError

Label = Literal["H", "V", "D", "A"]

#: Fields taken from ``[experiments.bb84]`` when the calibration table leaves them out.
FROM_BB84 = ("alice_node", "pattern_generator", "bob_node", "tagger", "channel_map", "rep_rate_hz")
#: Fields that pick instruments (not routine parameters).
INSTRUMENT_FIELDS = {"alice_node", "pattern_generator", "bob_node", "tagger", "controller"}


class _CalibrationSettings(BaseModel):
    """The instruments and wiring every calibration of the BB84 link needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    NAME: ClassVar[str] = ""

    alice_node: str = Field("alice", description="Node of the transmitter's pattern generator.")
    pattern_generator: str | None = Field(
        None, description="Instrument name of Alice's PatternGenerator; None = her only one."
    )
    bob_node: str = Field("bob", description="Node of the receiver.")
    tagger: str | None = Field(
        None, description="Instrument name of Bob's TimeTagger; None = his only one."
    )
    channel_map: dict[Label, int] = Field(
        description="Bob's tagger input of each receiver detector, {H, V, D, A} -> channel."
    )
    rep_rate_hz: float = Field(gt=0, le=20e9, description="Transmitter pulse rate, Hz.")

    @field_validator("channel_map")
    @classmethod
    def _check_channel_map(cls, cm: dict[Label, int]) -> dict[Label, int]:
        labels = set(cm)
        if labels != {"H", "V", "D", "A"}:
            missing = sorted({"H", "V", "D", "A"} - labels)
            raise ValueError(f"needs H, V, D and A (missing {', '.join(missing)})")
        chans = list(cm.values())
        if len(set(chans)) != 4 or min(chans) < 1:
            raise ValueError(f"four distinct channels >= 1 needed (got {chans})")
        return cm

    def routine_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the calibration routine."""
        return {k: v for k, v in self.model_dump().items() if k not in INSTRUMENT_FIELDS}

    @classmethod
    def _from_mus(cls, mus: list[float]) -> dict[str, Any]:
        """Defaults a routine derives from BB84's intensity levels."""
        return {}

    @classmethod
    def table(cls) -> str:
        return f"experiments.calibration.{cls.NAME}"

    @classmethod
    def from_profile(cls, profile: Any) -> Any:
        """From ``[experiments.bb84]`` and ``[experiments.calibration.<NAME>]``."""
        source = getattr(profile, "source", "") or "<profile>"
        experiments = getattr(profile, "experiments", {}) or {}
        bb84 = experiments.get("bb84") or {}
        calib = experiments.get("calibration") or {}
        if not isinstance(calib, dict):
            raise ConfigError(source, "experiments.calibration", "must be a table")
        own = calib.get(cls.NAME) or {}
        if not isinstance(own, dict):
            raise ConfigError(source, cls.table(), "must be a table")
        origin: dict[str, str] = {}
        data: dict[str, Any] = {}
        for key in FROM_BB84:
            if key in bb84:
                data[key], origin[key] = bb84[key], "experiments.bb84"
        mus = bb84.get("mus")
        if isinstance(mus, list) and all(isinstance(m, int | float) for m in mus):
            for key, value in cls._from_mus([float(m) for m in mus]).items():
                data[key], origin[key] = value, "experiments.bb84.mus"
        for key, value in own.items():
            data[key], origin[key] = value, cls.table()
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            parts = [str(x) for x in first["loc"] if x != "[key]"]
            table = origin.get(parts[0], cls.table()) if parts else cls.table()
            msg = str(first["msg"]).removeprefix("Value error, ")
            if first["type"] == "missing":
                msg = f"missing (set it in [{cls.table()}] or [experiments.bb84])"
            where = ".".join([table, *parts])
            if table.endswith(".mus"):  # a value derived from BB84's intensity levels
                where, msg = table, f"gives {parts[0]} = {data.get(parts[0])!r}: {msg}"
            raise ConfigError(source, where, msg) from None


def _vacuum_index(mus: list[float]) -> int | None:
    zeros = [i for i, m in enumerate(mus) if m == 0.0]
    return zeros[0] if zeros else None


class PolarizationSettings(_CalibrationSettings):
    """Parameters of :func:`~qhil.calibration.calibrate_polarization` plus the instruments."""

    NAME: ClassVar[str] = "polarization"

    controller: str | None = Field(
        None, description="Instrument name of Bob's PolarizationController; None = his only one."
    )
    pattern_length: int = Field(
        1024, ge=8, le=1 << 23, description="Shortest reference pattern, symbols."
    )
    intensity_index: int = Field(0, ge=0, le=7, description="Intensity of the reference light.")
    target_error: float = Field(0.01, gt=0, lt=0.5, description="Stop below this e_Z and e_X.")
    confidence: float = Field(
        0.95, gt=0, lt=1, description="Confidence of the bounds compared with the target."
    )
    integration_s: float = Field(2e-3, gt=0, description="Gate per reference per evaluation, s.")
    verify_integration_s: float = Field(20e-3, gt=0, description="Verification gate, s.")
    max_acquisitions: int = Field(150, ge=4, description="Counting gates allowed in all.")
    settle_s: float = Field(
        1e-3, ge=0, description="Uncounted gate after each change (light in flight), s."
    )
    max_voltage_mv: int = Field(5000, gt=0, description="Controller range, +- mV.")
    half_wave_voltage_mv: float | list[float] | None = Field(
        None,
        description="Known half-wave voltage, mV: one for every channel or one per channel; "
        "None = learn each channel's (a scan, then a few points on each other channel's line).",
    )
    scan_points: int = Field(11, ge=5, le=64, description="Voltages of the learning scan.")
    min_half_wave_mv: float | None = Field(None, gt=0, description="Lower bound of the scan fit.")
    max_half_wave_mv: float | None = Field(None, gt=0, description="Upper bound of the scan fit.")
    half_wave_spread: float = Field(
        1.4,
        gt=1,
        le=4,
        description="Each channel's half-wave voltage is searched within this factor of the "
        "scanned channel's (squared when nothing there fits).",
    )
    converged_mv: int = Field(5, ge=1, description="Moves below this count as no move, mV.")

    @field_validator("half_wave_voltage_mv", mode="before")
    @classmethod
    def _check_half_wave(cls, value: Any) -> Any:
        values = value if isinstance(value, list) else [value]
        if value is not None and (
            not values
            or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in values)
            or not all(x > 0 for x in values)
        ):
            raise ValueError(
                f"must be a voltage > 0 (mV) or a list of them, one per channel; got {value!r}"
            )
        return value


class DetectorEfficiencySettings(_CalibrationSettings):
    """Parameters of :func:`~qhil.calibration.calibrate_detector_efficiency`."""

    NAME: ClassVar[str] = "detector_efficiency"

    intensity_index: int = Field(
        0,
        ge=0,
        le=7,
        description="Level of the mixed light (default: BB84's weakest non-zero mu).",
    )
    vacuum_intensity_index: int | None = Field(
        None, ge=0, le=7, description="Level with mu = 0 for the background (default: BB84's)."
    )
    pattern_length: int = Field(1 << 16, ge=8, le=1 << 24, description="Mixed pattern, symbols.")
    gates: int = Field(5, ge=1, description="Gates of mixed light.")
    integration_s: float = Field(0.2, gt=0, description="Gate length, s.")
    background_gates: int = Field(2, ge=0, description="Gates of vacuum (background).")
    settle_s: float = Field(1e-3, ge=0, description="Uncounted gate after each pattern, s.")
    dead_time_s: float | None = Field(
        None, ge=0, description="Detectors' dead time for a correction; None = none."
    )

    @classmethod
    def _from_mus(cls, mus: list[float]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        positive = [(m, i) for i, m in enumerate(mus) if m > 0]
        if positive:
            out["intensity_index"] = min(positive)[1]
        vac = _vacuum_index(mus)
        if vac is not None:
            out["vacuum_intensity_index"] = vac
        return out


class DelaySettings(_CalibrationSettings):
    """Parameters of :func:`~qhil.calibration.calibrate_delays`."""

    NAME: ClassVar[str] = "delays"

    vacuum_intensity_index: int = Field(
        ge=0, le=7, description="Level with mu = 0 between the bright pulses (default: BB84's)."
    )
    intensity_index: int = Field(0, ge=0, le=7, description="Level of the bright pulses.")
    reference: Label = Field("H", description="Detector the others are timed against.")
    period_pulses: int = Field(256, ge=2, description="Pulses per period of the sparse train.")
    bright_pulses: int = Field(64, ge=4, description="Periods per pattern.")
    integration_s: float = Field(0.1, gt=0, description="Acquisition, s.")
    settle_s: float = Field(1e-3, ge=0, description="Uncounted gate after the pattern, s.")
    window_ps: float = Field(5000.0, gt=0, description="Half-width of a channel's peak, ps.")
    coarse_bin_ps: float = Field(1000.0, gt=0, description="Bin of the coarse peak search, ps.")
    max_drift: float = Field(1e-4, gt=0, lt=1e-2, description="Clock drift searched.")
    apply: bool = Field(False, description="Set the tagger's input delays to line up.")

    @classmethod
    def _from_mus(cls, mus: list[float]) -> dict[str, Any]:
        vac = _vacuum_index(mus)
        return {} if vac is None else {"vacuum_intensity_index": vac}


class MeanPhotonNumberSettings(_CalibrationSettings):
    """Parameters of :func:`~qhil.calibration.calibrate_mean_photon_numbers`.

    The tap's gain and the output loss are the lab's own calibrations of the optics
    between the meter and Alice's output (with their standard deviations); they
    have no defaults, as no bench shares another's.
    """

    NAME: ClassVar[str] = "mean_photon_number"

    power_meter: str | None = Field(
        None, description="Instrument name of Alice's PowerMeter; None = her only one."
    )
    read_attenuator: bool = Field(
        True,
        description="Read Alice's variable attenuator (between the tap and her output) and "
        "add its attenuation to output_loss_db.",
    )
    attenuator: str | None = Field(
        None, description="Instrument name of that Attenuator; None = her only one."
    )
    levels: int = Field(3, ge=1, le=8, description="Intensity levels (default: BB84's mus).")
    wavelength_nm: float = Field(1550.0, gt=0, description="Light's wavelength (meter's).")
    tap_gain_db: float = Field(
        ge=-60, le=90, description="Power at the meter over power at the transmitter's output, dB."
    )
    tap_gain_std_db: float = Field(0.05, ge=0, le=3, description="Its calibration's std, dB.")
    output_loss_db: float = Field(
        ge=0,
        le=60,
        description="Loss from the transmitter's output to Alice's output, besides the "
        "variable attenuator (insertion losses), dB.",
    )
    output_loss_std_db: float = Field(0.05, ge=0, le=3, description="Its calibration's std, dB.")
    meter_accuracy_rel: float = Field(
        0.05, ge=0, le=0.5, description="The sensor's stated accuracy (relative, +-)."
    )
    meter_offset_w: float = Field(
        2e-11, ge=0, description="Uncertainty of the meter's dark offset (no zeroing), W."
    )
    zero_on_level: int | None = Field(
        None,
        ge=0,
        le=7,
        description="Dark-zero the meter while this (vacuum) level plays; only if it is dark.",
    )
    readings: int = Field(10, ge=2, le=10000, description="Readings per level (one more dropped).")
    average_count: int = Field(
        100, ge=1, description="Meter samples per reading (~3 ms each on a PM100D)."
    )
    pattern_length: int = Field(4096, ge=8, le=1 << 24, description="Symbols per level pattern.")
    confidence: float = Field(
        0.999, gt=0.5, lt=1, description="Two-sided confidence of the measured intervals."
    )

    def routine_kwargs(self) -> dict[str, Any]:
        skip = {"channel_map", "read_attenuator", "attenuator", "power_meter"}
        return {k: v for k, v in super().routine_kwargs().items() if k not in skip}

    @classmethod
    def _from_mus(cls, mus: list[float]) -> dict[str, Any]:
        return {"levels": len(mus)}
