"""``[experiments.network]``: the links of the bench, request defaults, ``qhil ping``.

```toml
[experiments.network]
links = [["alice", "repeater", "alice.station_repeater"],
         ["repeater", "bob", "repeater.station_bob"]]   # node, node, "<node>.<station>"
deadline_s = 1.0            # a request's default deadline (bench s)
[experiments.network.ping]
count = 4                   # probes
```

Validated against the bench (the nodes exist, each station plays HeraldingStation, the
links form a path); errors are ``ConfigError(file, field, problem)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from qhil.errors import ConfigError


class PingSettings(BaseModel):
    """``[experiments.network.ping]``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    count: int = Field(10, ge=1, le=10_000, description="Probes (requests) sent.")
    pairs_per_probe: int = Field(10, ge=1, le=100_000, description="Pairs each probe requests.")
    sample_fraction: float = Field(
        1.0, gt=0.0, le=1.0, description="Share of a probe's pairs measured (the rest released)."
    )
    min_fidelity: float = Field(
        0.5, ge=0.0, lt=1.0, description="Threshold: F > 1/2 is entanglement of a Bell pair."
    )

    delta: float = Field(
        0.15, gt=0.0, le=0.5, description="SPRT: H1 F = min_fidelity + delta, H0 F = min_fidelity."
    )
    alpha: float = Field(0.01, gt=0.0, lt=0.5, description="SPRT: P(reachable | F = min).")
    beta: float = Field(0.01, gt=0.0, lt=0.5, description="SPRT: P(unreachable | F = min + delta).")
    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="Of the per-probe Clopper-Pearson fidelity bound."
    )
    deadline_s: float | None = Field(
        None, gt=0.0, le=3600.0, description="Deadline of each probe's request; None: deadline_s."
    )

    @field_validator("sample_fraction")
    @classmethod
    def _samples_a_pair(cls, v: float, info: ValidationInfo) -> float:
        pairs = info.data.get("pairs_per_probe")
        if pairs is not None and v * pairs < 1.0:
            raise ValueError(
                f"{v:g} of pairs_per_probe {pairs} is {v * pairs:.3g} pairs measured per "
                f"probe: at least 1 (sample_fraction >= {1 / pairs:.3g})"
            )
        return v

    @model_validator(mode="after")
    def _test_fits(self) -> PingSettings:
        if self.min_fidelity + self.delta > 1.0:
            raise ValueError(f"min_fidelity + delta ({self.min_fidelity} + {self.delta}) exceeds 1")
        return self


class NetworkSettings(BaseModel):
    """``[experiments.network]`` of a profile."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    TABLE: ClassVar[str] = "experiments.network"

    links: list[tuple[str, str, str]] = Field(
        default_factory=list, description='[node, node, "<node>.<station instrument>"] per link.'
    )
    memory: str | None = Field(
        None, description="NetworkMemory instrument name at every node (None: the only one)."
    )
    deadline_s: float = Field(1.0, gt=0.0, le=3600.0, description="Default request deadline.")
    min_fidelity: float = Field(0.5, ge=0.0, le=1.0, description="Default request minimum.")
    characterisation_pairs: int = Field(
        60, ge=4, le=100_000, description="Pairs per link measured to estimate its fidelity."
    )
    memory_calibration_max_age_s: float = Field(
        7 * 86400.0, ge=0.0, description="Oldest memory calibration whose T2 the estimate uses."
    )
    seed: int | None = Field(None, description="Of the random bases; None: the bench's seed.")
    ping: PingSettings = Field(default_factory=lambda: PingSettings.model_validate({}))

    @field_validator("links")
    @classmethod
    def _links(cls, v: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        if not v:
            raise ValueError("needs at least one link [node, node, '<node>.<station>']")
        for a, b, station in v:
            if a == b:
                raise ValueError(f"link {a}-{b} joins a node to itself")
            if station.count(".") != 1:
                raise ValueError(f"station {station!r} is not '<node>.<instrument>'")
        pairs = [frozenset((a, b)) for a, b, _ in v]
        if len(set(pairs)) != len(pairs):
            raise ValueError("two links join the same nodes")
        return v

    @property
    def nodes(self) -> list[str]:
        out: list[str] = []
        for a, b, _ in self.links:
            out += [n for n in (a, b) if n not in out]
        return out

    def route(self, local: str, remote: str) -> list[tuple[int, str, str]]:
        """The links from ``local`` to ``remote`` as ``(link index, near node, far node)``;
        ValueError when there is no path."""
        known = self.nodes
        for node in (local, remote):
            if node not in known:
                raise ValueError(f"no node {node!r} on the network ({', '.join(known)})")
        if local == remote:
            raise ValueError(f"{local!r} to itself: a request joins two different nodes")
        # breadth-first search over the links
        back: dict[str, tuple[int, str]] = {}
        frontier, seen = [local], {local}
        while frontier and remote not in seen:
            nxt = []
            for node in frontier:
                for i, (a, b, _) in enumerate(self.links):
                    if node in (a, b):
                        other = b if node == a else a
                        if other not in seen:
                            seen.add(other)
                            back[other] = (i, node)
                            nxt.append(other)
            frontier = nxt
        if remote not in seen:
            raise ValueError(f"no path of links from {local!r} to {remote!r}")
        path: list[tuple[int, str, str]] = []
        node = remote
        while node != local:
            i, prev = back[node]
            path.append((i, prev, node))
            node = prev
        return path[::-1]

    @classmethod
    def from_profile(cls, profile: Any) -> NetworkSettings:
        source = getattr(profile, "source", "") or "<profile>"
        table = (getattr(profile, "experiments", {}) or {}).get("network")
        if table is None:
            raise ConfigError(source, cls.TABLE, "missing: the network's links are not given")
        if not isinstance(table, dict):
            raise ConfigError(source, cls.TABLE, "must be a table")
        try:
            settings = cls.model_validate(table)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = cls.TABLE
            for part in first["loc"]:
                loc += f"[{part}]" if isinstance(part, int) else f".{part}"
            msg = str(first["msg"]).removeprefix("Value error, ")
            raise ConfigError(source, loc, msg) from None
        if getattr(profile, "nodes", None) is not None:
            settings.check_bench(profile, source)
        return settings

    def check_bench(self, profile: Any, source: str) -> None:
        """Every node exists with one NetworkMemory, every station plays HeraldingStation."""
        from qhil.orchestrator.experiments.clock_sync.settings import _instrument

        for i, (a, b, station) in enumerate(self.links):
            for node in (a, b):
                if node not in profile.nodes:
                    raise ConfigError(
                        source,
                        f"{self.TABLE}.links[{i}]",
                        f"no node {node!r} in the profile (nodes: {', '.join(profile.nodes)})",
                    )
            node, name = station.split(".")
            if node not in profile.nodes:
                raise ConfigError(source, f"{self.TABLE}.links[{i}]", f"no node {node!r}")
            found = _instrument(profile, node, "HeraldingStation", name)
            if isinstance(found, str):
                raise ConfigError(source, f"{self.TABLE}.links[{i}]", found)
        for node in self.nodes:
            found = _instrument(profile, node, "NetworkMemory", self.memory)
            if isinstance(found, str):
                field = f"{self.TABLE}.memory" if self.memory else f"{self.TABLE}.links"
                raise ConfigError(source, field, found)


__all__ = ["NetworkSettings", "PingSettings"]
