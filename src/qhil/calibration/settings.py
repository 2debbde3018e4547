"""Settings of the recorded polarization calibration, from a bench profile.

Which instruments and how Bob's detectors are wired come from the profile's
``[experiments.bb84]`` table (the calibration serves that link); a table
``[experiments.calibration.polarization]`` may set any field below, overriding::

    [experiments.calibration.polarization]
    controller = "polctrl"        # Bob's PolarizationController (None = his only one)
    target_error = 0.01
    integration_s = 2e-3

Errors name the file and the field, e.g.
``hw_profiles/default.toml: experiments.calibration.polarization.target_error: ...``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qhil.errors import ConfigError

Label = Literal["H", "V", "D", "A"]

#: Fields taken from ``[experiments.bb84]`` when the calibration table leaves them out.
FROM_BB84 = ("alice_node", "pattern_generator", "bob_node", "tagger", "channel_map", "rep_rate_hz")
TABLE = ("experiments", "calibration", "polarization")


class PolarizationSettings(BaseModel):
    """Parameters of :func:`~qhil.calibration.calibrate_polarization` plus the instruments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alice_node: str = Field("alice", description="Node of the transmitter's pattern generator.")
    pattern_generator: str | None = Field(
        None, description="Instrument name of Alice's PatternGenerator; None = her only one."
    )
    bob_node: str = Field("bob", description="Node of the receiver.")
    tagger: str | None = Field(
        None, description="Instrument name of Bob's TimeTagger; None = his only one."
    )
    controller: str | None = Field(
        None, description="Instrument name of Bob's PolarizationController; None = his only one."
    )
    channel_map: dict[Label, int] = Field(
        description="Bob's tagger input of each receiver detector, {H, V, D, A} -> channel."
    )
    rep_rate_hz: float = Field(gt=0, le=20e9, description="Transmitter pulse rate, Hz.")
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
    half_wave_voltage_mv: float | None = Field(
        None, gt=0, description="Known half-wave voltage, mV; None = learn it by a scan."
    )
    scan_points: int = Field(11, ge=5, le=64, description="Voltages of the learning scan.")
    min_half_wave_mv: float | None = Field(None, gt=0, description="Lower bound of the scan fit.")
    max_half_wave_mv: float | None = Field(None, gt=0, description="Upper bound of the scan fit.")
    converged_mv: int = Field(5, ge=1, description="Moves below this count as no move, mV.")

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
        """Keyword arguments of :func:`~qhil.calibration.calibrate_polarization`."""
        skip = {"alice_node", "pattern_generator", "bob_node", "tagger", "controller"}
        return {k: v for k, v in self.model_dump().items() if k not in skip}

    @classmethod
    def from_profile(cls, profile: Any) -> PolarizationSettings:
        """From ``[experiments.bb84]`` and ``[experiments.calibration.polarization]``."""
        source = getattr(profile, "source", "") or "<profile>"
        experiments = getattr(profile, "experiments", {}) or {}
        bb84 = experiments.get("bb84") or {}
        calib = experiments.get("calibration") or {}
        if not isinstance(calib, dict):
            raise ConfigError(source, "experiments.calibration", "must be a table")
        own = calib.get("polarization") or {}
        if not isinstance(own, dict):
            raise ConfigError(source, ".".join(TABLE), "must be a table")
        origin: dict[str, str] = {}
        data: dict[str, Any] = {}
        for key in FROM_BB84:
            if key in bb84:
                data[key], origin[key] = bb84[key], "experiments.bb84"
        for key, value in own.items():
            data[key], origin[key] = value, ".".join(TABLE)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            parts = [str(x) for x in first["loc"] if x != "[key]"]
            table = origin.get(parts[0], ".".join(TABLE)) if parts else ".".join(TABLE)
            msg = str(first["msg"]).removeprefix("Value error, ")
            if first["type"] == "missing":
                msg = f"missing (set it in [{'.'.join(TABLE)}] or [experiments.bb84])"
            raise ConfigError(source, ".".join([table, *parts]), msg) from None
