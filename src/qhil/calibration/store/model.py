"""Typed calibration records read from recorded runs, and the kinds of calibration.

A calibration is not stored twice: the run that measured it (``calibration.<name>``,
or an experiment that calibrated on its way, e.g. BB84's ``polcal_*``) is the record.
A :class:`CalibrationKind` says which run kinds feed a kind, under which result prefix,
which of their results are its quantities, and when such a run is not a usable
calibration (e.g. a polarization search that missed its target). :func:`from_run` turns a
run into a typed :class:`Calibration`: quantities with their 1-sigma errors, the
instrument identities of the bench it was measured on, when, by which software.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from qhil.records import RunRecord, RunStatus

#: Version of the typed record read from a run (bump when the meaning of a field changes).
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Quantity:
    """One calibrated value with its 1-sigma error (None when the run states none), or a
    one-sided bound (``bound`` "lower" / "upper") at ``confidence`` (e.g. a memory's T1
    that did not decay measurably: ``T1 > 41 s`` at 0.95)."""

    value: float
    std: float | None = None
    bound: str | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class Calibration:
    """A calibration result as read from its run."""

    kind: str
    run_id: str
    run_kind: str
    made_at: datetime  # when the measurement ended (the run's stop, else its start)
    identities: dict[str, str]  # {"node.instrument": identity} of the bench it was made on
    quantities: dict[str, Quantity]
    software: str  # qhil version that measured it
    schema: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # non-numeric results (sources, ...)

    def value(self, name: str) -> float:
        return self.quantities[name].value

    def age_s(self, now: datetime) -> float:
        return (now - self.made_at).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "schema": self.schema,
            "run_id": self.run_id,
            "run_kind": self.run_kind,
            "made_at": self.made_at.isoformat(),
            "software": self.software,
            "identities": dict(self.identities),
            "quantities": {k: _quantity_dict(q) for k, q in self.quantities.items()},
        }


def _quantity_dict(q: Quantity) -> dict[str, Any]:
    out: dict[str, Any] = {"value": q.value, "std": q.std}
    if q.bound is not None:
        out |= {"bound": q.bound, "confidence": q.confidence}
    return out


# usable(record, calibration) -> None when usable, else why not
Usable = Callable[[RunRecord, Calibration], str | None]


@dataclass(frozen=True)
class CalibrationKind:
    """Which runs make a calibration of this kind and what it holds.

    ``sources`` maps a run kind to the prefix of its results that belong to this
    calibration (``""``: all of them). ``quantities`` are glob patterns of the result
    names (after the prefix) kept as quantities (empty: every numeric result).
    ``usable`` rejects runs that finished but did not calibrate (beyond status success).
    """

    name: str
    sources: Mapping[str, str]
    quantities: tuple[str, ...] = ()
    usable: Usable | None = None
    description: str = ""
    # Patterns of quantities that may be non-finite (not learned); any other non-finite
    # quantity makes the calibration unusable.
    may_be_nan: tuple[str, ...] = ()
    # Run kinds that calibrated on their way, before the part that may abort: their
    # aborted runs still hold a valid calibration (the kind's ``usable`` rule decides).
    aborted_ok: frozenset[str] = frozenset()
    # A later result set of the same run that supersedes the source prefix's (bb84's drift
    # tracking's last re-compensation, ``polcal_tracked_``), when the run has one.
    superseded_by: str | None = None


def _target_met(record: RunRecord, cal: Calibration) -> str | None:
    if cal.extra.get("target_met") is not True:
        return f"run {record.run_id}: the polarization search did not meet its target"
    if str(cal.extra.get("reuse", "")).startswith("reused"):  # party mode: only verified
        return f"run {record.run_id} reused {cal.extra.get('reuse')}"
    return None


KINDS: dict[str, CalibrationKind] = {}


def register_kind(kind: CalibrationKind) -> CalibrationKind:
    """Add (or replace) a kind; returns it."""
    KINDS[kind.name] = kind
    return kind


for _k in (
    CalibrationKind(
        "polarization",
        {
            "calibration.polarization": "",
            "bb84": "polcal_",
            "bb84.bob": "polcal_",
            "bbm92.bob": "polcal_",
            # The entanglement bench: bob's controller from alice-heralded pairs.
            **dict.fromkeys(("visibility", "chsh", "bbm92", "calibration.mount_zero"), "polcal_"),
        },
        ("v[0-9]_mv", "half_wave_v[0-9]_mv", "e_z_after", "e_x_after", "e_[zx]_after_clicks"),
        _target_met,
        "Bob's polarization controller voltages compensating the fibre",
        may_be_nan=("half_wave_v[0-9]_mv",),  # a channel's rate not learned
        # A bb84 run's compensation (recorded before the key exchange, its target met)
        # stays valid when the key exchange later aborted (no_key, QBER): the stored
        # voltages are only a candidate, checked on the bench before reuse anyway.
        aborted_ok=frozenset({"bb84", "bb84.bob"}),
        superseded_by="polcal_tracked_",
    ),
    CalibrationKind(
        "detectors",
        {"calibration.detector_efficiency": ""},
        tuple(f"relative_{d}" for d in "hvda"),
        description="relative efficiencies of Bob's four detectors",
    ),
    CalibrationKind(
        "delays",
        {"calibration.delays": ""},
        tuple(f"delay_{d}_ps" for d in "hvda"),
        description="relative delays of Bob's four detector channels",
    ),
    CalibrationKind(
        "mean_photon_number",
        {"calibration.mean_photon_number": "", "bb84": "mucal_"},
        ("mu_[0-9]", "mu_[0-9][0-9]"),
        description="mean photon numbers of Alice's levels",
    ),
    CalibrationKind(
        "clock",
        {"clock_sync": ""},
        ("offset_ps", "frequency_offset_ppb", "path_delay_s"),
        description="bob's tagger clock onto alice's (clock_sync runs; their corrections "
        "files remain what the next clock-sync reads)",
    ),
):
    register_kind(_k)


def kind_for(name: str) -> CalibrationKind:
    """The registered kind, or the generic kind of ``calibration.<name>`` runs (E.g. a new
    calibration records its runs and is a kind without registration)."""
    if name in KINDS:
        return KINDS[name]
    return CalibrationKind(name, {f"calibration.{name}": ""})


def error_names(name: str) -> tuple[str, ...]:
    """Result names that hold the 1-sigma error of result ``name``
    (``x_std``, ``x_stderr``; for ``base_unit`` also ``base_std_unit``, ``base_stderr_unit``)."""
    out = [f"{name}_std", f"{name}_stderr"]
    if "_" in name:
        base, unit = name.rsplit("_", 1)
        out += [f"{base}_std_{unit}", f"{base}_stderr_{unit}"]
    return tuple(out)


def bound_of(name: str) -> tuple[str, str] | None:
    """A one-sided bound's side and the result holding its confidence, for a result named
    ``<x>_lower[_<unit>]`` / ``<x>_upper[_<unit>]`` (confidence ``<x>_lower_cl``)."""
    parts = name.split("_")
    for i in (len(parts) - 1, len(parts) - 2):
        if i > 0 and parts[i] in ("lower", "upper"):
            return parts[i], "_".join([*parts[: i + 1], "cl"])
    return None


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def pair_quantities(
    results: Mapping[str, Any], patterns: tuple[str, ...] = ()
) -> dict[str, Quantity]:
    """Numeric results (matching ``patterns``, if any) with their errors, errors themselves
    excluded."""
    numeric = {k: x for k, v in results.items() if (x := _number(v)) is not None}
    errors = {e for k in numeric for e in error_names(k) if e in numeric}
    bounds = {k: b for k in numeric if (b := bound_of(k)) is not None and b[1] in numeric}
    errors |= {cl for _, cl in bounds.values()}  # a bound's confidence is no quantity

    def rank(k: str) -> int:  # the patterns' order (H, V, D, A), then the name's
        return next((i for i, p in enumerate(patterns) if fnmatch.fnmatchcase(k, p)), -1)

    out: dict[str, Quantity] = {}
    for k in sorted(numeric, key=lambda k: (rank(k), k)):
        if k in errors or (patterns and rank(k) < 0):
            continue
        if k in bounds:
            side, cl = bounds[k]
            out[k] = Quantity(numeric[k], None, side, numeric[cl])
            continue
        std = next((numeric[e] for e in error_names(k) if e in numeric), None)
        out[k] = Quantity(numeric[k], None if std is None or not math.isfinite(std) else std)
    return out


def from_run(kind: CalibrationKind, record: RunRecord) -> Calibration | None:
    """The calibration of ``kind`` a run holds, or None (another kind, or no such results)."""
    if record.kind not in kind.sources:
        return None
    prefix = kind.sources[record.kind]
    later = kind.superseded_by
    if prefix and later and any(k.startswith(later) for k in record.results):
        prefix = later  # the run re-measured it: the last measurement is the calibration
    own = {k[len(prefix) :]: v for k, v in record.results.items() if k.startswith(prefix)}
    quantities = pair_quantities(own, kind.quantities)
    if not quantities:
        return None  # e.g. a bb84 run that did not compensate (or reused a calibration)
    return Calibration(
        kind=kind.name,
        run_id=record.run_id,
        run_kind=record.kind,
        made_at=record.stopped_at or record.started_at,
        identities=dict(record.identities),
        quantities=quantities,
        software=str(record.software.get("qhil", "")),
        extra={k: v for k, v in own.items() if _number(v) is None},
    )


def unusable(kind: CalibrationKind, record: RunRecord, cal: Calibration) -> str | None:
    """Why a run's calibration cannot be used (None: it can)."""
    aborted_ok = record.status is RunStatus.ABORTED and record.kind in kind.aborted_ok
    if record.status is not RunStatus.SUCCESS and not aborted_ok:
        return f"run {record.run_id} ended {record.status.value}"
    bad = [
        n
        for n, q in cal.quantities.items()
        if not math.isfinite(q.value)
        and not any(fnmatch.fnmatchcase(n, p) for p in kind.may_be_nan)
    ]
    if bad:  # a NaN voltage or efficiency calibrates nothing
        return f"run {record.run_id}: non-finite {', '.join(bad)}"
    return None if kind.usable is None else kind.usable(record, cal)
