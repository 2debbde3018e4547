"""Bench profiles: TOML files in ``hw_profiles/``, validated by pydantic.

A profile names the bench's nodes and their instruments (catalogue model,
resource address, settings), and, for an emulated bench, the world's physics.
``resource = "emulated"`` means: serve this instrument from its emulator, at
an address chosen when the bench starts. Switching to the lab bench means
writing the instruments' real addresses there instead; nothing else changes.

Every problem is reported as :class:`qhil.errors.ConfigError` naming the file
and the field path, e.g. ``hw_profiles/lab.toml: nodes.bob.instruments.tdc.model:
unknown instrument model 'tdc9'``.

A profile is named by a path, or by a name looked up first in ``./hw_profiles``
(the user's own benches) and then among the profiles shipped inside the package
(``qhil/hw_profiles``, found through :mod:`importlib.resources`, so they are there
in a wheel install too; in the repository that folder is a symlink to the
top-level ``hw_profiles/``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qhil.catalogue import CATALOGUE
from qhil.errors import ConfigError

EMULATED = "emulated"
PROFILES_FOLDER = "hw_profiles"  # ./hw_profiles for the user's, qhil/hw_profiles for the shipped
DEFAULT_PROFILE = "default"


class InstrumentSpec(BaseModel):
    """One instrument of a node."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Catalogue model, e.g. 'santec.tsl570'.")
    resource: str = Field(EMULATED, description="VISA resource, serial path/URL, or 'emulated'.")
    extra_resources: dict[str, str] = Field(
        default_factory=dict,
        description="Further ports of the same instrument, e.g. {counts = 'TCPIP0::h::12345::SOCKET'}; "
        "passed to the driver as <name>_resource; 'emulated' for the emulator's own.",
    )
    component: str | None = Field(None, description="World component the emulator is wired to.")
    emulator: dict[str, Any] = Field(default_factory=dict, description="Emulator options.")
    settings: dict[str, Any] = Field(default_factory=dict, description="Applied at configure.")
    timeout_s: float | None = Field(None, gt=0)

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        if v not in CATALOGUE:
            raise ValueError(
                f"unknown instrument model {v!r}; known: {', '.join(sorted(CATALOGUE))}"
            )
        return v


class NodeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    instruments: dict[str, InstrumentSpec] = Field(default_factory=dict)


class BenchSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    seed: int = Field(0, ge=0, lt=2**63, description="Seed of the world and the emulators.")


class Profile(BaseModel):
    """A validated bench profile."""

    model_config = ConfigDict(extra="forbid")

    bench: BenchSpec
    nodes: dict[str, NodeSpec]
    world: dict[str, Any] | None = None
    experiments: dict[str, dict[str, Any]] = Field(default_factory=dict)
    source: str = ""

    def instruments(self) -> list[tuple[str, str, InstrumentSpec]]:
        """(node, name, spec) of every instrument, in profile order."""
        return [(n, i, s) for n, node in self.nodes.items() for i, s in node.instruments.items()]

    def snapshot(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.snapshot(), sort_keys=True).encode()).hexdigest()


def packaged_profiles_dir() -> Path:
    """The folder of the profiles shipped inside the qhil package."""
    folder = resources.files("qhil").joinpath(PROFILES_FOLDER)
    # pip unpacks a wheel, so the package's files are on disk; a zipped qhil is not supported.
    if not isinstance(folder, Path):
        raise ConfigError(str(folder), "profile", "qhil's shipped profiles are not files on disk")
    return folder


def user_profiles_dir() -> Path:
    """The user's own profiles: ``./hw_profiles`` of the working directory."""
    return Path.cwd() / PROFILES_FOLDER


def available_profiles() -> dict[str, Path]:
    """Every profile name that resolves, to its file: the user's ``./hw_profiles`` first."""
    found: dict[str, Path] = {}
    for base in (user_profiles_dir(), packaged_profiles_dir()):
        if base.is_dir():
            for path in sorted(base.glob("*.toml")):
                found.setdefault(path.stem, path.resolve())
    return found


def resolve_profile_path(name_or_path: str | None) -> Path:
    """A profile by path, or by name in ``./hw_profiles`` then in qhil's shipped profiles.

    ``default`` when None. The shipped ones resolve to their real file (in the repository:
    the top-level ``hw_profiles/``), so the source named in errors is the file to edit.
    """
    name = name_or_path or DEFAULT_PROFILE
    p = Path(name)
    if p.suffix == ".toml" or p.is_file():
        known = None if p.exists() else available_profiles().get(p.stem)
        if known is not None:  # e.g. hw_profiles/lab_example.toml, typed outside the repository
            raise ConfigError(
                name,
                "profile",
                f"file not found in {Path.cwd()}; the profile {p.stem!r} is {known}: "
                f"give its name, {p.stem}, without .toml",
            )
        return p
    user, shipped = user_profiles_dir(), packaged_profiles_dir()
    for base in (user, shipped):
        cand = base / f"{name}.toml"
        if cand.is_file():
            return cand.resolve()
    names = ", ".join(sorted(available_profiles())) or "none"
    raise ConfigError(
        name,
        "profile",
        f"no such profile (looked for {name}.toml in {user} and in qhil's shipped profiles "
        f"{shipped}; available: {names}; or give a path to a .toml file)",
    )


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str) -> dict[str, Any]:
    """``--set path=value``: dotted path into the profile; value parsed as TOML if it can be."""
    out = copy.deepcopy(data)
    for item in overrides:
        path, sep, raw = item.partition("=")
        if not sep or not path:
            raise ConfigError(
                source, item, "an override is path=value, e.g. world.links.alice-bob.length_km=50"
            )
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        keys = path.split(".")
        if not all(k.strip() for k in keys):
            raise ConfigError(
                source, path, "an empty name in the path; write dotted names such as bench.seed"
            )
        node: Any = out
        for i, k in enumerate(keys[:-1]):
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                where = ".".join(keys[: i + 1])
                raise ConfigError(
                    source, path, f"cannot set inside {where!r}: it is a value, not a table"
                )
            node = child
        node[keys[-1]] = value
    return out


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(x) for x in loc)


def load_profile(name_or_path: str | None = None, overrides: list[str] | None = None) -> Profile:
    """Read, override and validate a profile; the world section is checked by the world model."""
    path = resolve_profile_path(name_or_path)
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(source, "profile", "file not found") from None
    except IsADirectoryError:
        raise ConfigError(source, "profile", "is a directory, not a profile file") from None
    except OSError as exc:
        raise ConfigError(source, "profile", f"cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, "profile", f"not UTF-8 text ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "profile", f"not valid TOML: {exc}") from None
    data = apply_overrides(data, overrides or [], source)
    _check_finite(data, source, ())
    try:
        profile = Profile.model_validate({**data, "source": source})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(source, _loc(first["loc"]), first["msg"]) from None
    if profile.world is not None:
        from qhil.emulators.world.config import load_world_config

        load_world_config(profile.world, source)  # raises ConfigError naming the field
    for node, name, spec in profile.instruments():
        if spec.resource == EMULATED and spec.component is not None and profile.world is None:
            raise ConfigError(
                source, f"nodes.{node}.instruments.{name}.component", "no [world] to wire it to"
            )
    _check_experiments(profile)
    return profile


def check_instrument_settings(profile: Profile) -> None:
    """Each instrument's ``settings`` against its driver's class, as configuring the bench
    will check them against the driver (the commands run it before anything opens)."""
    from qhil.catalogue import entry
    from qhil.orchestrator.settings import check_settings

    for node, name, spec in profile.instruments():
        if spec.settings:
            check_settings(
                entry(spec.model).driver_class(),
                spec.settings,
                source=profile.source,
                prefix=f"nodes.{node}.instruments.{name}",
            )


def _check_finite(value: Any, source: str, loc: tuple[Any, ...]) -> None:
    """No NaN or infinity anywhere: TOML allows them, no field of a bench means them."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(source, _loc(loc), f"must be a finite number (got {value})")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, source, (*loc, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(v, source, (*loc, i))


#: Tables of ``[experiments]`` and what reads them.
EXPERIMENTS = ("bb84", "calibration", "clock_sync", "visibility", "chsh", "bbm92", "network")
#: Longest BB84 acquisition a profile may ask for (a year; longer is a typo, and its
#: block count would not even fit an integer).
MAX_ACQUISITION_S = 365 * 86400.0


def acquisition_s(settings: Any) -> float:
    """A BB84 settings' total acquisition time, s (as a float: no block-count overflow)."""
    if settings.blocks is not None:
        return float(settings.blocks) * settings.block_duration_s
    return float(settings.duration_s)


def _check_experiments(profile: Profile) -> None:
    """Validate ``[experiments]`` as the jobs will (same errors, before any instrument opens).

    ``bb84`` as ``qhil run bb84`` reads it; each ``calibration.<name>`` table as its
    ``qhil calibrate`` reads it, and the polarization one also when BB84 compensates first.
    """
    source = profile.source
    for name in profile.experiments:
        if name not in EXPERIMENTS:
            raise ConfigError(
                source,
                f"experiments.{name}",
                f"unknown experiment; known: {', '.join(EXPERIMENTS)}",
            )
    if "bb84" in profile.experiments:
        from qhil.orchestrator.experiments.bb84.settings import BB84Settings

        bb84 = BB84Settings.from_profile(profile)
        if acquisition_s(bb84) > MAX_ACQUISITION_S:
            which = "blocks" if bb84.blocks is not None else "duration_s"
            raise ConfigError(
                source,
                f"experiments.bb84.{which}",
                f"an acquisition of {acquisition_s(bb84):.4g} s; at most "
                f"{MAX_ACQUISITION_S:g} s (a year)",
            )
    if "clock_sync" in profile.experiments:
        from qhil.orchestrator.experiments.clock_sync.settings import ClockSyncSettings

        ClockSyncSettings.from_profile(profile)
    if "visibility" in profile.experiments or "chsh" in profile.experiments:
        from qhil.orchestrator.experiments.entanglement.settings import (
            ChshSettings,
            VisibilitySettings,
        )

        for cls in (VisibilitySettings, ChshSettings):
            if cls.TABLE.split(".", 1)[1] in profile.experiments:
                cls.from_profile(profile)
    if "bbm92" in profile.experiments:
        from qhil.orchestrator.experiments.bbm92.settings import BBM92Settings

        BBM92Settings.from_profile(profile)
    if "network" in profile.experiments:
        from qhil.orchestrator.experiments.network.settings import NetworkSettings

        NetworkSettings.from_profile(profile)
    from qhil.calibration.entanglement_jobs import (
        CoincidenceDelaySettings,
        MountZeroSettings,
    )
    from qhil.calibration.memory import MemorySettings
    from qhil.calibration.settings import (
        DelaySettings,
        DetectorEfficiencySettings,
        MeanPhotonNumberSettings,
        PolarizationSettings,
    )

    classes: dict[str, Any] = {
        c.NAME: c
        for c in (
            PolarizationSettings,
            DetectorEfficiencySettings,
            DelaySettings,
            MeanPhotonNumberSettings,
            MountZeroSettings,
            CoincidenceDelaySettings,
            MemorySettings,
        )
    }
    tables = profile.experiments.get("calibration", {})
    for name in tables:
        if name not in classes:
            raise ConfigError(
                source,
                f"experiments.calibration.{name}",
                f"unknown calibration; known: {', '.join(sorted(classes))}",
            )
    wanted = set(tables)
    if "bb84" in profile.experiments and bb84.calibrate_polarization:
        wanted.add("polarization")
    for name in sorted(wanted):
        classes[name].from_profile(profile)
