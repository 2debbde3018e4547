"""BB84 settings: the profile's ``[experiments.bb84]`` table, validated.

Example (every field is described on :class:`BB84Settings`)::

    [experiments.bb84]
    alice_node = "alice"
    bob_node = "bob"
    channel_map = { H = 1, V = 2, D = 3, A = 4 }
    rep_rate_hz = 80e6
    mus = [0.5, 0.1, 0.0]
    intensity_probabilities = [0.8, 0.15, 0.05]
    z_basis_probability = 0.5
    pattern_length = 8000000
    blocks = 20
    max_qber = 0.11

Errors name the file and the field, e.g.
``hw_profiles/default.toml: experiments.bb84.mus: ...``.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from qhil.errors import ConfigError
from qhil.numerics.qkd import tag_bits_for
from qhil.orchestrator.experiments.settings_errors import table_error

#: Detector labels of Bob's passive receiver, and the (basis, bit) each stands for.
#: Basis 0 = Z (H/V), 1 = X (D/A); bit 0 = H or D (the world's and the numerics' convention).
DETECTOR_LABELS: dict[str, tuple[int, int]] = {"H": (0, 0), "V": (0, 1), "D": (1, 0), "A": (1, 1)}

Label = Literal["H", "V", "D", "A"]

#: Fields each node may choose for itself (not part of the shared-settings digest).
#: Largest signal mean photon number accepted: a weak coherent source. Beyond ~1 photon per
#: pulse the multi-photon pulses (P(n >= 2) = 26 % at mu = 1) approach the single-photon ones
#: and the decoy analysis has little left to certify.
MAX_SIGNAL_MU = 1.0
#: Largest "vacuum" level: an intensity modulator's off state leaks (20-30 dB extinction of a
#: signal of ~0.5 leaves <~ 5e-3); the decoy bounds treat the vacuum level as (near) empty.
MAX_VACUUM_MU = 1e-3

LOCAL_FIELDS = {
    "settle_s",
    "calibrate_polarization",
    "track_polarization",  # Bob's decision; Alice serves reference light when asked
    "tracking_significance",
    "polarization_max_age_s",
    "verify_mus",
    "alice_node",
    "pattern_generator",
    "bob_node",
    "tagger",
    "channel_map",
    "max_drift_ppm",
    "min_alignment_significance",
    "message_timeout_s",
}


class BB84Settings(BaseModel):
    """Decoy-state BB84 parameters (units in the names; all from the profile)."""

    # Every float finite: duration_s = inf overflowed n_blocks, NaN passes every bound.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    alice_node: str = Field("alice", description="Node whose pattern generator drives Alice.")
    pattern_generator: str | None = Field(
        None,
        description="Instrument name of Alice's PatternGenerator; None = the node's only one.",
    )
    bob_node: str = Field("bob", description="Node whose time tagger records Bob's detectors.")
    tagger: str | None = Field(
        None, description="Instrument name of Bob's TimeTagger; None = the node's only one."
    )
    channel_map: dict[Label, int] = Field(
        description="Bob's tagger input of each receiver detector, {H, V, D, A} -> channel."
    )
    rep_rate_hz: float = Field(
        gt=0, le=20e9, description="Pulse rate of Alice's transmitter = pattern symbol rate, Hz."
    )
    mus: tuple[float, float, float] = Field(
        description=(
            "Mean photon numbers per pulse leaving Alice (calibrated), for the pattern's "
            "intensity indices 0 = signal, 1 = decoy, 2 = vacuum."
        )
    )
    intensity_probabilities: tuple[float, float, float] = Field(
        description="Probability of signal, decoy and vacuum per pulse (sum 1)."
    )
    z_basis_probability: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="Alice's probability of the Z (key) basis; X is the test basis.",
    )
    pattern_length: int = Field(
        8_000_000,
        ge=1024,
        le=1 << 26,
        description=(
            "Symbols per block (<= the generator's memory). Bob acquires one pattern period, "
            "pattern_length / rep_rate_hz seconds, so no symbol is observed twice. Default "
            "8,000,000: 100 ms at 80 MHz, two of them fit the 33500B's 16 MSa memory option."
        ),
    )
    blocks: int | None = Field(None, ge=1, description="Number of blocks (or give duration_s).")
    duration_s: float | None = Field(
        None, gt=0, description="Total acquisition time, s; rounded up to whole blocks."
    )
    alignment_fraction: float = Field(
        0.05,
        gt=0,
        le=0.5,
        description="Fraction of pulses whose basis and bit Alice reveals to align Bob's clicks; "
        "revealed pulses are excluded from the key and the statistics.",
    )
    max_drift_ppm: float = Field(
        100.0,
        gt=0,
        lt=1e4,
        description="Largest clock-rate difference the pulse grid search covers.",
    )
    min_alignment_significance: float = Field(
        6.0, gt=0, description="Correlation peak needed to accept a block's alignment, in sigma."
    )
    max_qber: float = Field(
        0.11, gt=0, lt=0.5, description="Abort when the signal QBER (either basis) exceeds this."
    )
    calibrate_polarization: bool = Field(
        False,
        description="Before the key exchange, compensate Bob's polarization controller "
        "(qhil.calibration, settings in [experiments.calibration.polarization]).",
    )
    polarization_max_age_s: float = Field(
        86400.0,
        ge=0,
        strict=True,  # a number: true or "10" is a mistake, not 1 s or 10 s
        description="With calibrate_polarization: reuse the latest polarization calibration of "
        "the same instruments (qhil.calibration.store) when it is at most this old and one "
        "check at its voltages still meets its target; else compensate. 0 = every run.",
    )
    track_polarization: bool = Field(
        True,
        description="With calibrate_polarization: watch the revealed subset's QBER block by "
        "block and re-compensate the polarization between blocks when it rises beyond its "
        "expectation (one-sided binomial test at tracking_significance; bb84/tracking.py).",
    )
    tracking_significance: float = Field(
        1e-3,
        gt=0,
        lt=0.5,
        description="Per-block false-alarm probability of the drift test: a block whose "
        "revealed QBER is as expected triggers a re-compensation at most this often.",
    )
    verify_mus: bool = Field(
        True,
        description="Before the key exchange, measure the mean photon numbers leaving Alice "
        "(Alice's PowerMeter; [experiments.calibration.mean_photon_number]) and abort unless "
        "each configured mu lies in its measured interval. False trusts mus unchecked.",
    )
    settle_s: float | None = Field(
        None,
        ge=0,
        description="Photons still in the fibre when Alice switches patterns carry the previous "
        "block's (one link delay of them, ~4.9 us per km). None (default): Bob measures how long "
        "they last from Alice's revealed symbols and drops them (bob.PreviousPattern, README "
        "'Settling'). A number, s: Bob drops his first settle_s of every block instead (less "
        "than half a block).",
    )
    eps_sec: float = Field(1e-9, gt=0, lt=1, description="Secrecy parameter (Lim et al. 2014).")
    eps_cor: float = Field(
        1e-15, gt=0, lt=1, description="Correctness parameter = verification tag collision prob."
    )
    eps_pe: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Failure probability of each reported decoy bound (Ma et al.); "
        "None = eps_sec / 21, the per-estimate share Lim et al. use.",
    )
    frame_bits: int = Field(
        1 << 16, ge=256, description="Cascade frame size, bits (frames reconciled in one batch)."
    )
    message_timeout_s: float = Field(
        120.0, gt=0, description="How long a party waits for the peer's next message, s."
    )

    @field_validator("mus", mode="before")
    @classmethod
    def _three_mus(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and len(value) != 3:
            raise ValueError(
                f"exactly three values needed: signal, decoy, vacuum (got {len(value)})"
            )
        # Before the per-item float check, so the message shows all three values.
        if isinstance(value, list | tuple) and any(
            isinstance(m, float) and not math.isfinite(m) for m in value
        ):
            raise ValueError(f"finite mean photon numbers needed (got {list(value)})")
        return value

    @field_validator("mus")
    @classmethod
    def _check_mus(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        signal, decoy, vacuum = value
        got = f"(got {list(value)})"
        if not 0 < signal <= MAX_SIGNAL_MU:
            raise ValueError(
                f"signal must be in (0, {MAX_SIGNAL_MU:g}] photons per pulse: a weak coherent "
                f"source {got}"
            )
        if not 0 <= vacuum <= MAX_VACUUM_MU:
            raise ValueError(f"vacuum must be in [0, {MAX_VACUUM_MU:g}] (near empty) {got}")
        if not vacuum < decoy < signal - vacuum:
            raise ValueError(f"need signal > decoy + vacuum and decoy > vacuum {got}")
        return value

    @model_validator(mode="after")
    def _check(self) -> BB84Settings:
        labels = set(self.channel_map)
        if labels != set(DETECTOR_LABELS):
            missing = sorted(set(DETECTOR_LABELS) - labels)
            raise ValueError(f"channel_map needs H, V, D and A (missing {', '.join(missing)})")
        chans = list(self.channel_map.values())
        if len(set(chans)) != 4 or min(chans) < 0:
            raise ValueError(f"channel_map: four distinct channels >= 0 needed (got {chans})")
        p = self.intensity_probabilities
        if min(p) <= 0 or not math.isclose(sum(p), 1.0, abs_tol=1e-9):
            raise ValueError(
                f"intensity_probabilities: three values > 0 summing to 1 (got {list(p)})"
            )
        if (self.blocks is None) == (self.duration_s is None):
            raise ValueError("give exactly one of blocks and duration_s")
        if self.settle_s is not None and self.settle_s >= self.block_duration_s / 2:
            raise ValueError(
                f"settle_s: {self.settle_s:g} s would drop half a block or more (a block is "
                f"pattern_length / rep_rate_hz = {self.block_duration_s:g} s); leave it out "
                "to have Bob measure it"
            )
        return self

    # --- derived values ---

    @property
    def block_duration_s(self) -> float:
        """Bob's acquisition per block: one period of the pattern."""
        return self.pattern_length / self.rep_rate_hz

    @property
    def n_blocks(self) -> int:
        if self.blocks is not None:
            return self.blocks
        assert self.duration_s is not None
        return max(1, math.ceil(self.duration_s / self.block_duration_s - 1e-9))

    @property
    def tag_bits(self) -> int:
        """Verification tag length: collision probability <= eps_cor."""
        return tag_bits_for(self.eps_cor)

    @property
    def eps_pe_effective(self) -> float:
        return self.eps_pe if self.eps_pe is not None else self.eps_sec / 21.0

    def detector_of_channel(self) -> dict[int, tuple[int, int]]:
        """Tagger channel -> (basis, bit)."""
        return {ch: DETECTOR_LABELS[label] for label, ch in self.channel_map.items()}

    def digest(self) -> bytes:
        """SHA-256 of the settings both parties must share; compared before the first block.

        Local choices (which instruments, Bob's channel wiring, alignment search
        limits, timeouts) are left out: each node may set its own.
        """
        shared = self.model_dump(mode="json", exclude=LOCAL_FIELDS)
        text = json.dumps(shared, sort_keys=True)
        return hashlib.sha256(text.encode()).digest()

    # --- construction ---

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "<settings>") -> BB84Settings:
        """Validate a ``[experiments.bb84]`` table; ConfigError names ``source`` and the field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise table_error(exc, source, "experiments.bb84") from None

    @classmethod
    def from_profile(cls, profile: Any) -> BB84Settings:
        """From a loaded :class:`~qhil.orchestrator.profile.Profile`'s experiments table."""
        source = getattr(profile, "source", "") or "<profile>"
        table = getattr(profile, "experiments", {}).get("bb84")
        if table is None:
            raise ConfigError(source, "experiments.bb84", "no [experiments.bb84] table")
        settings = cls.from_mapping(dict(table), source)
        check_instrument_limits(settings, profile)
        return settings


def _model_playing(profile: Any, node: str, role: type, name: str | None) -> tuple[str, Any]:
    """``("node.name (model)", driver class)`` of the instrument ``Bench.role`` will pick,
    found from the profile and the catalogue alone; ("", None) when it picks none or
    several (the bench says why when it opens)."""
    from qhil.catalogue import entry
    from qhil.orchestrator.bench import _plays

    found = [
        (i, s.model)
        for n, i, s in profile.instruments()
        if n == node and (name is None or i == name) and _plays(s.model, role)
    ]
    if len(found) != 1:
        return "", None
    inst, model = found[0]
    return f"{node}.{inst} ({model})", entry(model).driver_class()


def check_instrument_limits(settings: BB84Settings, profile: Any) -> None:
    """pattern_length against the limits of the profile's models (roles PatternLimits,
    AcquisitionLimits): a block the pattern generator cannot hold or shorter than the
    tagger's shortest acquisition is a ConfigError naming the file and the field, before
    anything is opened (the drivers would refuse it mid-run). A model that states no
    limits is not checked here."""
    from qhil.drivers.roles import (
        AcquisitionLimits,
        PatternGenerator,
        PatternLimits,
        TimeTagger,
    )

    source = getattr(profile, "source", "") or "<profile>"
    n, field = settings.pattern_length, "experiments.bb84.pattern_length"
    which, gen = _model_playing(
        profile, settings.alice_node, PatternGenerator, settings.pattern_generator
    )
    if isinstance(gen, PatternLimits) and not (
        gen.min_pattern_symbols <= n <= gen.max_pattern_symbols
    ):
        raise ConfigError(
            source,
            field,
            f"{n} symbols do not fit the pattern generator {which}: "
            f"{gen.min_pattern_symbols}..{gen.max_pattern_symbols} symbols",
        )
    which, tagger = _model_playing(profile, settings.bob_node, TimeTagger, settings.tagger)
    # A relative tolerance: 80,000 symbols at 80 MHz are 1 ms, whatever the float rounding.
    if isinstance(tagger, AcquisitionLimits) and settings.block_duration_s < (
        tagger.min_acquisition_s * (1 - 1e-9)
    ):
        least = math.ceil(tagger.min_acquisition_s * settings.rep_rate_hz * (1 - 1e-9))
        raise ConfigError(
            source,
            field,
            f"a block of {n} symbols at rep_rate_hz {settings.rep_rate_hz:g} lasts "
            f"{settings.block_duration_s:.6g} s, shorter than the shortest acquisition of the "
            f"tagger {which}, {tagger.min_acquisition_s:g} s: at least {least} symbols",
        )
