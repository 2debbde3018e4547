"""``[experiments.visibility]`` and ``[experiments.chsh]``, validated (errors name file and field).

Both share the acquisition's fields (:class:`AcquisitionSettings`): the nodes and their
instruments (each named, or the node's only one playing the role), the taggers' inputs
for H, V, D, A, the pump current, the coincidence window and the clock-model search.

Angles: a half-wave plate whose fast axis is at ``t`` from the analyser's H turns the
measured polarization angle to ``2 t``. Mount angles are the mounts' own; a plate's axis
is at ``mount angle - <node>_mount_zero_deg`` (the zero from ``qhil calibrate``'s mount
zero run, 0 until calibrated; with phi+ only the two zeros' difference matters).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qhil.errors import ConfigError
from qhil.orchestrator.experiments.settings_errors import table_error

Inputs = tuple[int, int, int, int]
#: A plate or polarization angle, deg: one turn either way is every setting there is.
Angle = Annotated[float, Field(ge=-360.0, le=360.0)]


#: Said when a node is missing: the entanglement commands default to default.toml.
ENTANGLEMENT_HINT = "; the entanglement bench is the profile 'entanglement' (give it as PROFILE)"


class AcquisitionSettings(BaseModel):
    """What one two-node acquisition needs (shared by the entanglement experiments)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    TABLE: ClassVar[str] = "experiments.entanglement"

    alice_node: str = "alice"
    bob_node: str = "bob"
    source_node: str = "source"
    source: str | None = None  # the source node's EntangledPhotonSource (None: its only one)
    alice_tagger: str | None = None
    bob_tagger: str | None = None
    alice_mount: str | None = None  # RotationMount in front of the analyser (None: the only one)
    bob_mount: str | None = None
    alice_channels: Inputs = (1, 2, 3, 4)  # tagger inputs of H, V, D, A
    bob_channels: Inputs = (1, 2, 3, 4)
    alice_mount_zero_deg: float = Field(0.0, ge=-360.0, le=360.0)
    bob_mount_zero_deg: float = Field(0.0, ge=-360.0, le=360.0)
    # The newest mount-zero calibration of these very instruments (<= 7 days old) gives
    # both zeros when there is one (the run records which); else the two fields above.
    use_mount_zero_calibration: bool = True
    # Also within the source driver's declared range (checked against the bench).
    pump_current_ma: float = Field(40.0, ge=0.0, le=1000.0)
    crystal_temperature_c: float | None = Field(None, ge=-50.0, le=200.0)
    n_sigma: float = Field(3.0, gt=0.0, le=20.0)  # window: +-n_sigma of the fitted peak
    window_ps: int | None = Field(None, gt=0)  # or a fixed full width
    uncertainty_s: float = Field(0.5, gt=0.0, le=10.0)
    max_frequency_offset_ppm: float = Field(100.0, ge=0.0, le=1000.0)
    min_significance: float = Field(6.0, gt=0.0, le=1000.0)

    @field_validator("alice_channels", "bob_channels")
    @classmethod
    def _distinct(cls, v: Inputs) -> Inputs:
        if len(set(v)) != 4 or min(v) < 1:
            raise ValueError(f"four distinct tagger inputs >= 1 for H, V, D, A (got {list(v)})")
        return v

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "<settings>") -> Any:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise table_error(exc, source, cls.TABLE) from None

    @classmethod
    def from_profile(cls, profile: Any, **replace: Any) -> Any:
        """From a loaded profile's table (defaults without one); ``replace``: non-None
        values replace the table's (command-line options)."""
        source = getattr(profile, "source", "") or "<profile>"
        name = cls.TABLE.split(".", 1)[1]
        table = dict(getattr(profile, "experiments", {}).get(name, {}) or {})
        table.update({k: v for k, v in replace.items() if v is not None})
        settings = cls.from_mapping(table, source)
        if getattr(profile, "nodes", None) is not None:
            settings.check_bench(profile, source)
        return settings

    def instruments(self) -> list[tuple[str, str, str, str | None, bool]]:
        """(field, node, role, name, required) of every instrument the experiment uses."""
        return [
            ("source", self.source_node, "EntangledPhotonSource", self.source, True),
            ("alice_tagger", self.alice_node, "TimeTagger", self.alice_tagger, True),
            ("bob_tagger", self.bob_node, "TimeTagger", self.bob_tagger, True),
            ("alice_mount", self.alice_node, "RotationMount", self.alice_mount, True),
            ("bob_mount", self.bob_node, "RotationMount", self.bob_mount, True),
        ]

    def check_bench(self, profile: Any, source: str) -> None:
        """The nodes and instruments named exist on the profile's bench, one per role."""
        from qhil.orchestrator.experiments.clock_sync.settings import _instrument

        for field, node, role, name, required in self.instruments():
            if node not in profile.nodes:
                which = field.split("_")[0] + "_node" if field != "source" else "source_node"
                raise ConfigError(
                    source,
                    f"{self.TABLE}.{which}",
                    f"no node {node!r} in the profile (nodes: {', '.join(profile.nodes)})"
                    + ENTANGLEMENT_HINT,
                )
            found = _instrument(profile, node, role, name)
            if isinstance(found, str):
                if required:
                    raise ConfigError(source, f"{self.TABLE}.{field}", found)
                continue
            label, driver = found
            if role == "TimeTagger":
                side = field.split("_")[0]
                bad = tagger_inputs_outside(getattr(self, f"{side}_channels"), driver)
                if bad is not None:
                    raise ConfigError(source, f"{self.TABLE}.{side}_channels", bad % label)
            if role == "EntangledPhotonSource":
                lo, hi = getattr(driver, "pump_current_range_ma", (0.0, math.inf))
                if not lo <= self.pump_current_ma <= hi:
                    raise ConfigError(
                        source,
                        f"{self.TABLE}.pump_current_ma",
                        f"{self.pump_current_ma:g} mA is outside {label}'s range {lo:g}..{hi:g} mA",
                    )


def check_open_taggers(s: AcquisitionSettings, alice: Any, bob: Any, source: str) -> None:
    """At bench open, the inputs against the open taggers' own input count: for a driver
    that learns it only from the unit (its class declares none; the profile check is then
    silent). ConfigError naming the field."""
    for side, tagger in (("alice", alice), ("bob", bob)):
        bad = tagger_inputs_outside(getattr(s, f"{side}_channels"), tagger)
        if bad is not None:
            name = getattr(tagger, "name", None) or f"of {side}"
            raise ConfigError(source, f"{s.TABLE}.{side}_channels", bad % name)


def tagger_inputs_outside(channels: Inputs, tagger: Any) -> str | None:
    """Why ``channels`` are not all inputs of ``tagger`` (a driver class or instance that
    declares ``channels``, its input count), with ``%s`` for the tagger's name; None when
    they are (or the count is unknown)."""
    n = getattr(tagger, "channels", None)
    if not isinstance(n, int) or isinstance(n, bool):
        return None
    bad = [c for c in channels if c > n]
    if not bad:
        return None
    return f"input {bad[0]} is not one of the tagger %s's inputs 1-{n} (got {list(channels)})"


class CompensatedSettings(AcquisitionSettings):
    """An experiment that first compensates the fibres' polarization (``compensation.py``):
    bob's controller from alice-heralded coincidences, the plates at their zeros."""

    compensate_polarization: bool = True
    polarization_controller: str | None = None  # bob's PolarizationController (None: his only one)
    compensation_integration_s: float = Field(0.2, gt=0.0, le=60.0)  # per evaluation
    compensation_verify_s: float = Field(1.0, gt=0.0, le=600.0)
    # Reachable: the pairs' own error floor is (1 - V)/2 ~ 1.7 % at V = 0.966.
    compensation_target_error: float = Field(0.06, gt=0.0, lt=0.5)
    compensation_max_acquisitions: int = Field(150, ge=4, le=10_000)
    # Reuse the newest compensation of these instruments up to this old, s, when one
    # verification acquisition at its voltages meets the target (0: compensate every run).
    polarization_max_age_s: float = Field(86400.0, ge=0.0)

    def instruments(self) -> list[tuple[str, str, str, str | None, bool]]:
        found = super().instruments()
        if self.compensate_polarization:
            found.append(
                (
                    "polarization_controller",
                    self.bob_node,
                    "PolarizationController",
                    self.polarization_controller,
                    True,
                )
            )
        return found


class VisibilitySettings(CompensatedSettings):
    """``[experiments.visibility]``: fringes against one node's plate, the other fixed."""

    TABLE: ClassVar[str] = "experiments.visibility"

    scanned_node: Literal["alice", "bob"] = "alice"  # whose plate turns ("alice"/"bob" role)
    fixed_angle_deg: Angle = 0.0  # the other plate's axis (from its zero)
    # The scanned plate's axes (from its zero): a fringe goes as cos(4 theta), one period
    # per 90 deg; 8 points over it.
    angles_deg: list[Angle] = Field(
        default_factory=lambda: [0.0, 11.25, 22.5, 33.75, 45.0, 56.25, 67.5, 78.75],
        min_length=4,
    )
    integration_s: float = Field(0.5, gt=0.0, le=3600.0)  # per angle

    def acquisition_s(self) -> float:
        """The points' acquisition in total, s (compensation not counted)."""
        return len(self.angles_deg) * self.integration_s

    @field_validator("angles_deg")
    @classmethod
    def _spans(cls, v: list[float]) -> list[float]:
        if len({round((4.0 * a) % 360.0, 6) for a in v}) < 3:
            raise ValueError("need at least three different values of 4 x angle (mod 360)")
        if any(not math.isfinite(a) for a in v):
            raise ValueError("angles must be finite")
        return v


class ChshSettings(CompensatedSettings):
    """``[experiments.chsh]``: the four setting pairs (polarization angles, deg)."""

    TABLE: ClassVar[str] = "experiments.chsh"

    alice_angles_deg: tuple[Angle, Angle] = (0.0, 45.0)
    bob_angles_deg: tuple[Angle, Angle] = (22.5, 67.5)
    # S = E(a, b) - E(a, b') + E(a', b) + E(a', b'): right for phi+ at the defaults.
    signs: tuple[int, int, int, int] = (1, -1, 1, 1)
    integration_s: float = Field(1.0, gt=0.0, le=3600.0)  # per setting pair

    @field_validator("signs")
    @classmethod
    def _signs(cls, v: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        if any(s not in (1, -1) for s in v):
            raise ValueError(f"four of +1/-1 (got {list(v)})")
        return v

    def acquisition_s(self) -> float:
        """The four setting pairs' acquisition in total, s (compensation not counted)."""
        return 4 * self.integration_s

    def setting_pairs(self) -> list[tuple[float, float]]:
        """(a, b), (a, b'), (a', b), (a', b'): polarization angles."""
        (a, a2), (b, b2) = self.alice_angles_deg, self.bob_angles_deg
        return [(a, b), (a, b2), (a2, b), (a2, b2)]
