"""A small numpy fake of the repeater bench's drivers (HSC-1 stations, QMC-1 memories)
for the request logic's unit tests: pairs are Bell-diagonal, their Pauli error drawn at
the herald from a Werner distribution, each half dephasing with its memory's T2 when it
is next touched; one shared clock that each station's attempts advance."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from qhil.drivers.roles import HeraldResult
from qhil.errors import InstrumentError
from qhil.orchestrator.experiments.network import NetworkSettings
from qhil.orchestrator.experiments.network.frames import BELL_BITS, agree_expected, bell_name

LINKS = [["alice", "repeater", "alice.station"], ["repeater", "bob", "repeater.station"]]


@dataclass
class World:
    rng: np.random.Generator
    now: float = 0.0


@dataclass
class Pair:
    """The actual state: Bell bits (x, z); halves at (memory, mode)."""

    x: int
    z: int


@dataclass
class Half:
    pair: Pair
    stored_at: float
    touched_at: float


class _Instrument:
    """What every bench instrument offers (the Role protocol)."""

    name = "fake"

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def identity(self) -> str:
        return "FAKE"


class Switch:
    def __init__(self, value: bool = True) -> None:
        self.value = value

    async def get(self) -> bool:
        return self.value

    async def set(self, value: bool) -> None:
        self.value = bool(value)


class Readback:
    def __init__(self, value: Any) -> None:
        self.value = value

    async def get(self) -> Any:
        return self.value


class FakeMemory(_Instrument):
    def __init__(
        self, world: World, name: str, modes: int, t2_s: float, cutoff_s: float = math.inf
    ) -> None:
        self.world, self.name, self.t2_s, self.cutoff_s = world, name, t2_s, cutoff_s
        self.slots: list[Half | None] = [None] * modes
        self.power = Switch(True)
        self.read_failure = 0.0
        self.calls: list[str] = []

    # helpers for the stations and tests
    def _expire(self) -> None:
        for m, h in enumerate(self.slots):
            if h is not None and self.world.now - h.stored_at > self.cutoff_s:
                self.slots[m] = None

    def free_mode(self) -> int | None:
        self._expire()
        for m, h in enumerate(self.slots):
            if h is None:
                return m
        return None

    def _touch(self, mode: int) -> Half | None:
        self._expire()
        h = self.slots[mode]
        if h is None:
            return None
        dt = self.world.now - h.touched_at
        flip = (1 - math.exp(-dt / self.t2_s)) / 2 if dt > 0 else 0.0
        if self.world.rng.random() < flip:
            h.pair.z ^= 1
        h.touched_at = self.world.now
        return h

    # the QMC-1 calls the network uses
    async def storage_time_s(self, mode: int) -> float:
        self._expire()
        h = self.slots[mode]
        return math.nan if h is None else self.world.now - h.stored_at

    async def modes(self) -> int:
        return len(self.slots)

    async def coherence_times_s(self) -> tuple[float, float]:
        return math.inf, self.t2_s

    async def measure(self, mode: int, basis: str) -> int | None:
        self.calls.append(f"measure {mode} {basis}")
        h = self._touch(mode)
        self.slots[mode] = None
        if h is None or self.world.rng.random() < self.read_failure:
            return None
        other = getattr(h.pair, "outcome", None)
        if other is None:  # first half measured: a fair coin; the second follows the state
            bit = int(self.world.rng.integers(2))
            h.pair.outcome = (basis, bit)  # type: ignore[attr-defined]
            return bit
        first_basis, first_bit = other
        if first_basis != basis:
            return int(self.world.rng.integers(2))
        agree = agree_expected(bell_name(h.pair.x, h.pair.z), basis)
        return first_bit if agree else 1 - first_bit

    async def bell_measure(self, m1: int, m2: int) -> str | None:
        self.calls.append(f"bell {m1} {m2}")
        h1, h2 = self._touch(m1), self._touch(m2)
        self.slots[m1] = self.slots[m2] = None
        if h1 is None or h2 is None:
            return None
        outcome = ("phi+", "psi+", "phi-", "psi-")[int(self.world.rng.integers(4))]
        ox, oz = BELL_BITS[outcome]
        # the outer halves now share one pair: the XOR of both and the outcome
        joined = Pair(h1.pair.x ^ h2.pair.x ^ ox, h1.pair.z ^ h2.pair.z ^ oz)
        for half in self.world.halves():  # type: ignore[attr-defined]
            if half.pair is h1.pair or half.pair is h2.pair:
                half.pair = joined
        return outcome

    async def pauli(self, mode: int, op: str) -> None:
        h = self._touch(mode)
        if h is None:
            raise InstrumentError(self.name, 102, "Mode empty")
        x, z = {"I": (0, 0), "X": (1, 0), "Z": (0, 1), "Y": (1, 1)}[op]
        h.pair.x ^= x
        h.pair.z ^= z


class FakeStation(_Instrument):
    def __init__(
        self, world: World, a: FakeMemory, b: FakeMemory, p: float, period_s: float, f: float
    ) -> None:
        self.world, self.a, self.b, self.p, self.f = world, a, b, p, f
        self.attempt_period_s = Readback(period_s)
        self.success_probability = Readback(p)
        self.ends = Readback((a.name, b.name))
        self.requests = 0
        self.attempts = 0

    async def entangle(self, max_attempts: int) -> HeraldResult:
        """Links herald in parallel: every station asked at one moment starts then (the
        ``sleep(0)`` lets the others start too); the pair is born at its last attempt's
        emission, one period before the herald reaches the ends."""
        self.requests += 1
        start = self.world.now
        await asyncio.sleep(0)
        for mem in (self.a, self.b):
            if not mem.power.value:
                raise InstrumentError("station", 202, f"Memory off;{mem.name}")
            if mem.free_mode() is None:
                raise InstrumentError("station", 201, f"No free mode;{mem.name}")
        n = int(self.world.rng.geometric(self.p))
        period = self.attempt_period_s.value
        if n > max_attempts:
            self.world.now = max(self.world.now, start + max_attempts * period)
            self.attempts += max_attempts
            return HeraldResult(False, max_attempts, None, None, None, max_attempts * period)
        end = start + n * period
        self.world.now = max(self.world.now, end)
        self.attempts += n
        bell = ("psi+", "psi-")[int(self.world.rng.integers(2))]
        x, z = BELL_BITS[bell]
        err = int(self.world.rng.choice(4, p=[self.f, *[(1 - self.f) / 3] * 3]))
        pair = Pair(x ^ (err & 1), z ^ (err >> 1))
        ma, mb = self.a.free_mode(), self.b.free_mode()
        assert ma is not None and mb is not None
        born = end - period
        self.a.slots[ma] = Half(pair, born, born)
        self.b.slots[mb] = Half(pair, born, born)
        return HeraldResult(True, n, bell, ma, mb, n * period)


@dataclass
class FakeBench:
    memories: dict[str, FakeMemory]
    stations: dict[str, FakeStation]
    world: World
    profile: Any = field(default=None)

    def role(self, node: str, role: Any, name: str | None = None) -> Any:
        return self.memories[node]

    def instrument(self, node: str, name: str) -> Any:
        return self.stations[f"{node}.{name}"]

    async def identities(self) -> dict[str, str]:
        return {}


def fake_bench(
    *,
    seed: int = 1,
    f: tuple[float, float] = (0.95, 0.95),
    p: float = 0.05,
    period_s: float = 1e-5,
    t2_s: float = 10e-3,
    modes: dict[str, int] | None = None,
) -> FakeBench:
    world = World(np.random.default_rng(seed))
    modes = modes or {"alice": 2, "repeater": 4, "bob": 2}
    mems = {n: FakeMemory(world, f"{n}.memory", k, t2_s) for n, k in modes.items()}
    world.halves = lambda: [h for m in mems.values() for h in m.slots if h is not None]  # type: ignore[attr-defined]
    stations = {
        "alice.station": FakeStation(world, mems["alice"], mems["repeater"], p, period_s, f[0]),
        "repeater.station": FakeStation(world, mems["repeater"], mems["bob"], p, period_s, f[1]),
    }
    profile = SimpleNamespace(bench=SimpleNamespace(seed=seed), source="fake.toml")
    return FakeBench(mems, stations, world, profile)


def settings(**kw: Any) -> NetworkSettings:
    return NetworkSettings.model_validate({"links": LINKS, **kw})


async def check_busy_memories(network: Any) -> None:
    """Memories busy (alice's two modes held) is NoResources, before any attempt for a
    list of pairs, from the station's own refusal (code and text) one at a time; freed
    again, a request (frame corrected) is met."""
    import pytest

    from qhil.orchestrator.experiments.network import EntanglementRequest, NoResources

    held = await network.create(EntanglementRequest(remote="bob", pairs=2))
    assert {p.modes[0] for p in held} == {0, 1}
    with pytest.raises(NoResources, match="alice's memory has 0 free mode"):
        await network.create(EntanglementRequest(remote="bob"))
    with pytest.raises(NoResources, match="instrument error 201, 'No free mode;alice.memory'"):
        async for _ in network.pairs(EntanglementRequest(remote="bob")):
            pass
    for p in held:
        await network.release(p)
    pairs = await network.create(EntanglementRequest(remote="bob", frame="correct"))
    assert [p.bell for p in pairs] == ["phi+"]
