"""Clock-sync settings: the profile's ``[experiments.clock_sync]`` table, validated.

Every field has a default, so a bench without the table runs with them (one pair
source at alice, every input of both taggers). Example::

    [experiments.clock_sync]
    duration_s = 20.0
    tracking_interval_s = "auto"    # or seconds
    [experiments.clock_sync.sources.alice]   # the node whose SPDC board it is
    pump_current_ma = 40.0
    crystal_temperature_c = 35.0
    alice_channels = [1]            # inputs of alice's tagger that see this source's photons
    bob_channels = [1, 2, 3, 4]

Errors name the file and the field, e.g.
``hw_profiles/default.toml: experiments.clock_sync.tracking_interval_s: ...``.
"""

from __future__ import annotations

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
from qhil.orchestrator.experiments.settings_errors import table_error

TABLE = "experiments.clock_sync"
#: ``tracking_interval_s = "auto"``: the interval keeps the per-interval offset error within
#: this x sigma_rel/sqrt(N) (below the acceptance's 1.2, so that a measured rms over a few
#: dozen intervals stays under it), within these bounds, and with at least this many pairs.
AUTO_RATIO = 1.1
AUTO_MIN_INTERVAL_S = 0.01
AUTO_MAX_INTERVAL_S = 1.0
AUTO_MIN_PAIRS = 25.0
#: Stream chunk length with an automatic interval (chosen only after the acquisition, at
#: alice; both nodes read their taggers in chunks of the same length from the start).
AUTO_CHUNK_S = 1.0
#: The shortest tracking interval a run may be given, s: below it a run spends its time in
#: per-interval overhead (1e-6 s effectively hangs) for intervals of a pair or none.
MIN_INTERVAL_S = 1e-3


#: Settings a ``--party`` run's two processes must share (plus the method and the sources).
AGREED = (
    "alice_node",
    "bob_node",
    "duration_s",
    "acquisition_s",
    "tracking_interval_s",
    "uncertainty_s",
    "max_frequency_offset_ppm",
)


class PairSourceSettings(BaseModel):
    """One photon-pair source: which board, how to run it, where its photons are tagged."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    instrument: str | None = Field(
        None,
        description="Instrument name of the board (EntangledPhotonSource); None = the only one.",
    )
    pump_current_ma: float = Field(
        40.0, ge=0, le=1000, description="Pump current while running, mA."
    )
    crystal_temperature_c: float | None = Field(
        None, ge=-50, le=200, description="Crystal phase-matching setpoint, C; None = as it is."
    )
    alice_channels: tuple[int, ...] | None = Field(
        None, description="Inputs of alice's tagger seeing this source's photons; None = all."
    )
    bob_channels: tuple[int, ...] | None = Field(
        None, description="Inputs of bob's tagger seeing this source's photons; None = all."
    )


class ClockSyncSettings(BaseModel):
    """Clock synchronisation of bob's tagger to alice's (units in the names)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    alice_node: str = Field("alice", description="The reference node (clock A).")
    bob_node: str = Field("bob", description="The node whose clock is mapped onto A's (B).")
    alice_tagger: str | None = Field(None, description="Alice's TimeTagger; None = the only one.")
    bob_tagger: str | None = Field(None, description="Bob's TimeTagger; None = the only one.")
    sources: dict[str, PairSourceSettings] = Field(
        default_factory=lambda: {"alice": PairSourceSettings.model_validate({})},
        min_length=1,
        max_length=3,
        description="Pair sources by the node of their board; the method's are switched on "
        "for the run and off after. Two-way: the sources at alice_node and bob_node; "
        "one-way: the only source, or the one at neither end (a central pair source).",
    )
    shutters: tuple[str, ...] = Field(
        (),
        description="Attenuators (node.instrument) whose shutter is closed for the run and "
        "left closed: other light on the taggers' detectors (e.g. a BB84 transmitter).",
    )
    method: Literal["auto", "one-way", "two-way"] = Field(
        "auto", description="auto: two-way when there is a source at each end, else one-way."
    )
    duration_s: float = Field(10.0, gt=0, le=86400, description="Data taken in all, s.")
    acquisition_s: float = Field(
        1.0, gt=0, le=60, description="Data for the initial (and every re-) acquisition, s."
    )
    tracking_interval_s: float | Literal["auto"] = Field(
        "auto",
        description="One tracking update per interval of A's clock, s; auto: the longest "
        "interval whose offset error the clocks' wander inside it keeps within "
        f"{AUTO_RATIO:g}x sigma_rel/sqrt(N) (from the acquisition's rate and sigma_rel and "
        f"wander_ppb_per_sqrt_s), clamped to [{AUTO_MIN_INTERVAL_S:g}, {AUTO_MAX_INTERVAL_S:g}] s.",
    )
    uncertainty_s: float = Field(
        0.5, gt=0, le=1.0, description="The offset is searched in +-uncertainty_s, no prior."
    )
    max_frequency_offset_ppm: float = Field(
        100.0, ge=0, le=1000, description="The frequency offset is searched in +- this, ppm."
    )
    min_significance: float = Field(
        6.0, gt=0, description="Acquisition: a correlation peak below this (sigma) is no peak."
    )
    lock_significance: float = Field(
        5.0, gt=0, description="Tracking: an interval's peak below this (sigma) is a miss."
    )
    wander_ppb_per_sqrt_s: float = Field(
        1.0,
        ge=0,
        le=1e4,
        description="Expected relative frequency wander of the two clocks, ppb/sqrt(s) "
        "(sets the tracking loop's bandwidth).",
    )
    max_misses: int = Field(
        2, ge=1, le=100, description="Consecutive missed intervals that mean the lock is lost."
    )
    max_offset_stderr_ps: float | None = Field(
        None,
        gt=0,
        description="Requested precision per interval, ps; rates too low for it abort the run.",
    )
    message_timeout_s: float = Field(60.0, gt=0, le=3600, description="Channel message wait, s.")
    settle_s: float = Field(0.0, ge=0, le=60, description="Wait after the pump is switched on, s.")

    @field_validator("tracking_interval_s", mode="before")
    @classmethod
    def _interval(cls, v: Any) -> Any:
        if v == "auto":
            return v
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f'must be "auto" or a number of seconds (got {v!r})')
        if not (math.isfinite(v) and MIN_INTERVAL_S <= v <= 600):
            raise ValueError(
                f'must be "auto" or a number of seconds from {MIN_INTERVAL_S:g} to 600 (got {v!r})'
            )
        return float(v)

    @model_validator(mode="after")
    def _check(self) -> ClockSyncSettings:
        if self.alice_node == self.bob_node:
            raise ValueError("alice_node and bob_node must differ")
        for node, s in self.sources.items():
            for side in ("alice_channels", "bob_channels"):
                chans = getattr(s, side)
                if chans is not None and (not chans or any(c < 1 for c in chans)):
                    raise ValueError(f"sources.{node}.{side}: tagger inputs are numbered from 1")
        for i, where in enumerate(self.shutters):
            node, _, name = where.partition(".")
            if not node or not name:
                raise ValueError(f"shutters[{i}]: {where!r} is not node.instrument")
        ends = {self.alice_node, self.bob_node}
        if self.method == "two-way" and not ends <= set(self.sources):
            raise ValueError(
                f"method: two-way needs a pair source at {self.alice_node} and one at "
                f"{self.bob_node} (sources has {', '.join(self.sources)})"
            )
        if not self.two_way and len(self.sources) > 1:
            middle = [n for n in self.sources if n not in ends]
            if len(middle) != 1:
                raise ValueError(
                    f"sources: one-way uses one pair source, and {', '.join(self.sources)} "
                    "leave it open which (give one, a source at neither end, or both ends "
                    "for two-way)"
                )
        if self.lock_significance > self.min_significance:
            # The acquisition accepts a peak at min_significance over acquisition_s of data;
            # an interval (as long or shorter, usually) holds that peak at about the same
            # significance or less: a stricter lock misses, and loses, what was just found.
            raise ValueError(
                f"lock_significance ({self.lock_significance:g}) exceeds min_significance "
                f"({self.min_significance:g}): the loop would refuse to track the peak the "
                "acquisition accepted; lower lock_significance or raise min_significance"
            )
        # The result is the loop's model at its last interval: with no whole interval after
        # the acquisition it would be the acquisition's own fit, quoted past its data, with
        # an error that ignores the wander (4-12 sigma off at 0.1-0.3 s).
        one = self.longest_interval_s
        if self.duration_s < self.acquisition_s + one - 1e-9:
            what = (
                f"tracking_interval_s ({one:g})"
                if self.tracking_interval_s != "auto"
                else f'one "auto" tracking interval (at most {one:g} s)'
            )
            raise ValueError(
                f"duration_s ({self.duration_s:g}) is shorter than acquisition_s "
                f"({self.acquisition_s:g}) plus {what}: no interval would be tracked; "
                f"give at least {self.acquisition_s + one:g} s"
            )
        return self

    @property
    def longest_interval_s(self) -> float:
        """The tracking interval, or the longest ``auto`` may choose."""
        if self.tracking_interval_s == "auto":
            return AUTO_MAX_INTERVAL_S
        return float(self.tracking_interval_s)

    @property
    def two_way(self) -> bool:
        both = {self.alice_node, self.bob_node} <= set(self.sources)
        return self.method == "two-way" or (self.method == "auto" and both)

    @property
    def active_sources(self) -> dict[str, PairSourceSettings]:
        """The sources the method uses (the others stay off): both ends' for two-way; for
        one-way the only one, or the one at neither end."""
        ends = (self.alice_node, self.bob_node)
        if self.two_way:
            return {n: self.sources[n] for n in ends}
        if len(self.sources) == 1:
            return dict(self.sources)
        return {n: s for n, s in self.sources.items() if n not in ends}

    @property
    def chunk_s(self) -> float:
        """Stream time each node reads (and bob sends) at a time: the tracking interval when
        it is given, else ``AUTO_CHUNK_S`` (or all the acquisition's data, if shorter)."""
        if self.tracking_interval_s != "auto":
            return float(self.tracking_interval_s)
        return min(AUTO_CHUNK_S, self.acquisition_s)

    def shutters_at(self, node: str | None = None) -> list[tuple[str, str]]:
        """``(node, instrument)`` of each shutter (at ``node`` only, when given)."""
        pairs = [tuple(w.split(".", 1)) for w in self.shutters]
        return [(n, i) for n, i in pairs if node is None or n == node]

    @property
    def method_used(self) -> str:
        return "two-way" if self.two_way else "one-way"

    def agreed(self) -> dict[str, Any]:
        """What both parties of a ``--party`` run must agree on (each reads its own
        profile): alice sends it at the start, bob compares (``differences``)."""
        d = self.model_dump(mode="json")
        return {
            **{k: d[k] for k in AGREED},
            "method": self.method_used,
            "sources": {n: d["sources"][n] for n in self.active_sources},
        }

    def differences(self, alices: dict[str, Any]) -> list[str]:
        """``field alice X, bob Y`` for each agreed setting that differs from ``alices``."""
        mine = self.agreed()
        return [
            f"{k} alice {alices.get(k)!r}, bob {mine[k]!r}"
            for k in mine
            if alices.get(k) != mine[k]
        ]

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str = "<settings>") -> ClockSyncSettings:
        """Validate a ``[experiments.clock_sync]`` table; ConfigError names the file and field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise table_error(exc, source, TABLE) from None

    @classmethod
    def from_profile(cls, profile: Any, *, duration_s: float | None = None) -> ClockSyncSettings:
        """From a loaded profile (defaults when it has no table); ``duration_s`` replaces its own."""
        source = getattr(profile, "source", "") or "<profile>"
        table = dict(getattr(profile, "experiments", {}).get("clock_sync", {}) or {})
        if duration_s is not None:
            table["duration_s"] = duration_s
        settings = cls.from_mapping(table, source)
        if getattr(profile, "nodes", None) is not None:
            settings._check_bench(profile, source)
        return settings

    def _check_bench(self, profile: Any, source: str) -> None:
        """What the profile's bench lets us know before any instrument opens: the nodes
        and instruments named exist, the channels are inputs the taggers have, the pump
        current is in the source driver's declared range (the board's own live limit,
        e.g. an S-Fifteen's LLIMIT, stays the instrument's error)."""

        def fail(field: str, msg: str) -> ConfigError:
            return ConfigError(source, f"{TABLE}.{field}", msg)

        nodes = profile.nodes
        named = [("alice_node", self.alice_node), ("bob_node", self.bob_node)]
        named += [(f"sources.{n}", n) for n in self.sources]
        named += [(f"shutters[{i}]", n) for i, (n, _) in enumerate(self.shutters_at())]
        for field, node in named:
            if node not in nodes:
                raise fail(field, f"no node {node!r} in the profile (nodes: {', '.join(nodes)})")
        taggers: dict[str, tuple[str, Any]] = {}
        for side, field, node, want in (
            ("alice", "alice_tagger", self.alice_node, self.alice_tagger),
            ("bob", "bob_tagger", self.bob_node, self.bob_tagger),
        ):
            tagger = _instrument(profile, node, "TimeTagger", want)
            if isinstance(tagger, str):
                raise fail(field, tagger)
            taggers[side] = tagger
        for node, src in self.sources.items():
            found = _instrument(profile, node, "EntangledPhotonSource", src.instrument)
            if isinstance(found, str):
                raise fail(f"sources.{node}.instrument", found)
            lo, hi = getattr(found[1], "pump_current_range_ma", (0.0, math.inf))
            if not lo <= src.pump_current_ma <= hi:
                raise fail(
                    f"sources.{node}.pump_current_ma",
                    f"{src.pump_current_ma:g} mA is outside {found[0]}'s range {lo:g}..{hi:g} mA",
                )
            for side in ("alice", "bob"):
                name, driver = taggers[side]
                inputs = getattr(driver, "channels", None)
                chans = getattr(src, f"{side}_channels") or ()
                bad = [c for c in chans if isinstance(inputs, int) and c > inputs]
                if bad:
                    raise fail(
                        f"sources.{node}.{side}_channels",
                        f"input {bad[0]}: {side}'s tagger {name} has inputs 1-{inputs}",
                    )


def _instrument(profile: Any, node: str, role: str, name: str | None) -> tuple[str, Any] | str:
    """``(node.name (model), driver class)`` of the instrument of ``node`` playing ``role``
    (named ``name``, when given), or why there is not exactly one."""
    from qhil.catalogue import CATALOGUE

    specs = profile.nodes[node].instruments
    if name is not None and name not in specs:
        return f"no instrument {name!r} at node {node!r} (it has: {', '.join(specs) or 'none'})"
    found = [
        (i, spec.model)
        for i, spec in specs.items()
        if role in CATALOGUE[spec.model].roles and (name is None or i == name)
    ]
    if len(found) != 1:
        what = "no instrument" if not found else "several instruments (name one)"
        return f"node {node!r} has {what} playing {role}"
    i, model = found[0]
    return f"{node}.{i} ({model})", CATALOGUE[model].driver_class()
