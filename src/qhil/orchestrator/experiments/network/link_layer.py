"""Entanglement requests over heralded links and swapping repeaters (CREATE-and-keep).

Modelled on the link layer of Dahlberg et al., "A link layer protocol for quantum
networks" (SIGCOMM 2019) and its QIRG draft: a request names the remote node, the number
of pairs, the minimum fidelity and the longest time to wait (``max_time``), a purpose id;
each pair is answered with an id, its Bell state, its time and a fidelity estimate
("goodness"), or the request fails with a typed error. Here a request may span several
links: every elementary link of the route is generated at once (one heralding station
per link, ``asyncio.gather``), the nodes in between swap (``bell_measure``), and the
Pauli frame is tracked (``compose``) or corrected at the remote end (``pauli``).

Time is the bench's: each station reports how long its attempts took (``elapsed_s``);
the handle's clock (``clock_s``) advances by that, by the slowest of the links heralding
at once. Every wait is bounded by the request's deadline on that clock: a station is
never asked for more attempts than fit in the time left.

The fidelity estimate uses measured inputs only: each link's Bell-diagonal errors from
pairs measured in random bases (``characterise``), each memory's T2 from the newest
memory calibration of these instruments (else the controller's stated T2, said so), and
each half's storage time as its memory reports it; dephasing ``exp(-t / T2)`` per half,
errors composing by XOR through a swap (for Werner pairs: ``1/4 + (4F1-1)(4F2-1)/12``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from qhil.drivers.roles import HeraldingStation, HeraldResult, NetworkMemory
from qhil.errors import ConfigError, InstrumentError
from qhil.orchestrator.experiments.network import frames
from qhil.orchestrator.experiments.network.errors import (
    EntanglementRequestError,
    ExpiredByCutoff,
    FidelityUnreachable,
    NoResources,
    RequestTimeout,
)
from qhil.orchestrator.experiments.network.settings import NetworkSettings

#: Most attempts one station request asks for (HSC-1's limit).
MAX_ATTEMPTS = 100_000_000
#: A request whose estimated chance of one pair meeting its minimum fidelity within its
#: deadline is below this is rejected before any attempt (FidelityUnreachable).
REJECT_BELOW = 0.01
#: The estimate is tested against the delivered pairs measured in one basis at both ends
#: (score test of their agreements against the estimate's, two-sided 99.9 %) once this
#: many are measured: a calibrated T2 the outcomes contradict gives way to the stated one.
CHECK_MIN_PAIRS = 20
CHECK_Z = 3.29


@dataclass(frozen=True)
class EntanglementRequest:
    """A CREATE-and-keep request from ``local`` to ``remote``."""

    remote: str
    local: str | None = None  # None: the other end of the network's path
    pairs: int = 1
    min_fidelity: float | None = None  # None: [experiments.network] min_fidelity
    deadline_s: float | None = None  # emulated s from the request; None: deadline_s
    purpose_id: int = 0
    frame: Literal["track", "correct"] = "track"
    purification_rounds: int = 0

    def __post_init__(self) -> None:
        def integer(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def number(v: object) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        bad = None
        if not isinstance(self.remote, str) or not self.remote:
            bad = ("remote", "a node name")
        elif self.local is not None and (not isinstance(self.local, str) or not self.local):
            bad = ("local", "a node name or None")
        elif not integer(self.pairs) or self.pairs < 1:
            bad = ("pairs", "an integer >= 1")
        elif self.min_fidelity is not None and not (
            number(self.min_fidelity) and 0.0 <= self.min_fidelity <= 1.0
        ):
            bad = ("min_fidelity", "a number in 0 .. 1")
        elif self.deadline_s is not None and not (number(self.deadline_s) and self.deadline_s > 0):
            bad = ("deadline_s", "a finite time > 0 s")
        elif not integer(self.purpose_id) or not 0 <= self.purpose_id <= 0xFFFF:
            bad = ("purpose_id", "an integer in 0 .. 65535 (16 bits, as in QNodeOS)")
        elif self.frame not in ("track", "correct"):
            bad = ("frame", "'track' or 'correct'")
        elif not integer(self.purification_rounds) or self.purification_rounds < 0:
            bad = ("purification_rounds", "an integer >= 0")
        if bad is not None:
            value = getattr(self, bad[0])
            raise ValueError(f"EntanglementRequest.{bad[0]}: {value!r} is not {bad[1]}")


@dataclass(frozen=True)
class LinkPair:
    """A pair between two nodes held in their memories, before delivery: one heralded
    elementary-link pair (``link`` its index), or a swapped one (``link`` -1)."""

    link: int
    nodes: tuple[str, str]
    modes: tuple[int, int]
    bell: str
    created_at_s: float
    #: Estimated fidelity when the halves had been stored ``reference_storage_s``.
    fidelity: float
    #: Bell-diagonal error probabilities ``[F, pX, pZ, pY]`` relative to ``bell`` at the
    #: reference storage; None (or a first entry other than ``fidelity``, e.g. after a
    #: purifier's ``replace(pair, fidelity=...)``): a Werner pair of ``fidelity``.
    errors: tuple[float, float, float, float] | None = None
    reference_storage_s: tuple[float, float] = (0.0, 0.0)

    def error_vector(self) -> frames.Vector:
        if self.errors is None or abs(self.errors[0] - self.fidelity) > 1e-12:
            return frames.werner(self.fidelity)
        return np.asarray(self.errors, dtype=float)

    def mode_at(self, node: str) -> int:
        return self.modes[self.nodes.index(node)]

    def other(self, node: str) -> str:
        return self.nodes[1 - self.nodes.index(node)]


@dataclass(frozen=True)
class DeliveredPair:
    """One delivered pair: ``bell`` is the state of (local qubit, remote qubit)."""

    pair_id: int
    request_id: int
    purpose_id: int
    nodes: tuple[str, str]
    modes: tuple[int, int]
    bell: str
    requested_at_s: float
    started_at_s: float  # when this pair's generation began (request, or the previous pair)
    delivered_at_s: float
    estimated_fidelity: float

    @property
    def latency_s(self) -> float:
        return self.delivered_at_s - self.started_at_s


@dataclass(frozen=True)
class LinkEstimate:
    """A link as measured: Bell-diagonal errors of fresh pairs (``errors``, at the mean
    storage ``storage_s`` of each half when measured), success per attempt, period."""

    link: int
    nodes: tuple[str, str]
    errors: tuple[float, float, float, float]
    fidelity_std: float
    storage_s: tuple[float, float]
    pairs: int
    attempts: int
    success_probability: float
    attempt_period_s: float

    @property
    def fidelity(self) -> float:
        return self.errors[0]


@dataclass(frozen=True)
class NodeEstimate:
    node: str
    t2_s: float
    t2_std_s: float | None
    source: str  # "calibration <run id>" or "stated by the controller (...)"


@dataclass(frozen=True)
class NetworkEstimates:
    links: tuple[LinkEstimate, ...]
    nodes: dict[str, NodeEstimate] = field(default_factory=dict)

    def as_results(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for e in self.links:
            key = f"link_{e.nodes[0]}_{e.nodes[1]}"
            out[f"{key}_fidelity"] = e.fidelity
            out[f"{key}_fidelity_std"] = e.fidelity_std
            out[f"{key}_success_probability"] = e.success_probability
            out[f"{key}_attempt_period_s"] = e.attempt_period_s
        for n in self.nodes.values():
            out[f"{n.node}_t2_s"] = n.t2_s
            out[f"{n.node}_t2_source"] = n.source
        return out


Purifier = Callable[["Network", LinkPair, LinkPair], Awaitable[LinkPair | None]]


def _default_purifier() -> Purifier | None:
    """R3's BBPSSW round, when present (``experiments.teleport.purification``)."""
    try:
        from qhil.orchestrator.experiments.teleport import purification
    except ImportError:
        return None
    found = getattr(purification, "purify_link_pairs", None)
    return found if callable(found) else None


class Network:
    """Entanglement requests over an open bench's ``[experiments.network]`` links."""

    def __init__(
        self,
        bench: Any,
        settings: NetworkSettings,
        *,
        store: Any = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.bench = bench
        self.settings = settings
        self.store = store  # RunStore: where the memory calibrations are looked up
        seed = settings.seed if settings.seed is not None else _bench_seed(bench)
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self._memories: dict[str, NetworkMemory] = {
            node: bench.role(node, NetworkMemory, name=settings.memory) for node in settings.nodes
        }
        self._stations: list[HeraldingStation] = []
        for _, _, key in settings.links:
            node, name = key.split(".")
            station = bench.instrument(node, name)
            if not isinstance(station, HeraldingStation):
                raise TypeError(f"{key} ({type(station).__name__}) is not a HeraldingStation")
            self._stations.append(station)
        self._periods: list[float | None] = [None] * len(settings.links)
        self._wired = False
        self._checked: list[tuple[int, float]] = []  # (agreed, expected agreement) per pair
        self.clock_s = 0.0
        #: Attempts each link's station has made for this handle.
        self.attempts = [0] * len(settings.links)
        self.estimates: NetworkEstimates | None = None
        self.purifier: Purifier | None = _default_purifier()
        self._next_pair = 0
        self._next_request = 0

    # --- instruments ---

    def memory(self, node: str) -> NetworkMemory:
        return self._memories[node]

    def station(self, link: int) -> HeraldingStation:
        return self._stations[link]

    async def check_wiring(self) -> None:
        """Each link's station joins that link's two memories, in the link's order: the
        ends it reports (``HERald:ENDS?``) against the names the profile gives the nodes'
        memories (the instrument's ``component``, else ``<node>.<instrument>``). A mismatch
        is a profile mistake: ConfigError naming ``experiments.network.links[i]``, before
        any attempt. Done once per handle (``open_network`` and the first herald)."""
        if self._wired:
            return
        profile = getattr(self.bench, "profile", None)
        nodes = getattr(profile, "nodes", None)
        if not nodes:  # no profile to say how the memories are named
            self._wired = True
            return
        source = getattr(profile, "source", "") or "<profile>"
        for i, ((a, b, key), station) in enumerate(
            zip(self.settings.links, self._stations, strict=True)
        ):
            ends = tuple(str(e) for e in await station.ends.get())
            expected = (
                _memory_name(nodes, a, self.settings.memory),
                _memory_name(nodes, b, self.settings.memory),
            )
            if ends == expected:
                continue
            if ends == expected[::-1]:
                hint = f"list its nodes in the station's order: [{b!r}, {a!r}, {key!r}]"
            else:
                hint = "name the link's nodes by the memories the station joins"
            raise ConfigError(
                source,
                f"{NetworkSettings.TABLE}.links[{i}]",
                f"station {key} joins {ends[0]} - {ends[1]} (HERald:ENDS?), not the memories "
                f"of {a} - {b} ({expected[0]} - {expected[1]}): {hint}",
            )
        self._wired = True

    def _link_name(self, link: int) -> str:
        a, b, _ = self.settings.links[link]
        return f"{a}-{b}"

    async def attempt_period_s(self, link: int) -> float:
        period = self._periods[link]
        if period is None:
            period = float(await self._stations[link].attempt_period_s.get())
            self._periods[link] = period
        return period

    async def _herald(self, link: int, budget_s: float) -> HeraldResult | None:
        """Up to the attempts that fit in ``budget_s``; None when not even one fits."""
        if not self._wired:
            await self.check_wiring()
        period = await self.attempt_period_s(link)
        attempts = min(MAX_ATTEMPTS, math.floor(budget_s / period)) if period > 0 else 1
        if attempts < 1:
            return None
        station = self.settings.links[link][2]
        try:
            result = await self._stations[link].entangle(attempts)
        except InstrumentError as exc:
            raise NoResources(
                f"link {self._link_name(link)}: station {station} refused: "
                f"instrument error {exc.code}, {exc.text!r}"
            ) from exc
        self.attempts[link] += result.attempts
        # the clock moves at least by the attempts made (a station reporting less, e.g. 0,
        # must not let a request loop without its deadline coming nearer)
        return replace(result, elapsed_s=max(result.elapsed_s, result.attempts * period))

    def _link_pair(self, link: int, r: HeraldResult, created_at_s: float) -> LinkPair:
        a, b, _ = self.settings.links[link]
        assert r.bell is not None and r.mode_a is not None and r.mode_b is not None
        est = self.estimates.links[link] if self.estimates is not None else None
        errors = est.errors if est is not None else (1.0, 0.0, 0.0, 0.0)
        storage = est.storage_s if est is not None else (0.0, 0.0)
        return LinkPair(
            link, (a, b), (r.mode_a, r.mode_b), r.bell, created_at_s, errors[0], errors, storage
        )

    async def link_pair(self, link: int, deadline_at_s: float) -> LinkPair:
        """One elementary pair on ``link``, heralded before ``deadline_at_s`` (this
        handle's clock) or RequestTimeout."""
        r = await self._herald(link, deadline_at_s - self.clock_s)
        if r is not None:
            self.clock_s += r.elapsed_s
        if r is None or not r.success:
            raise RequestTimeout(self._timeout_text(link, r, deadline_at_s))
        return self._link_pair(link, r, self.clock_s)

    def _timeout_text(self, link: int, r: HeraldResult | None, deadline_at_s: float) -> str:
        station = self.settings.links[link][2]
        tried = "no attempt fitted" if r is None else f"{r.attempts} attempts heralded nothing"
        return (
            f"link {self._link_name(link)} ({station}): {tried} before the deadline "
            f"(clock {self.clock_s:.6g} s, deadline at {deadline_at_s:.6g} s)"
        )

    async def release(self, pair: LinkPair | DeliveredPair) -> None:
        """Empty both halves' modes (a destructive read-out whose outcome is dropped)."""
        await asyncio.gather(
            *(
                self._memories[n].measure(m, "Z")
                for n, m in zip(pair.nodes, pair.modes, strict=True)
            )
        )

    async def measure(
        self, pair: LinkPair | DeliveredPair, bases: tuple[str, str]
    ) -> tuple[int | None, int | None]:
        """Destructive read-out of both halves, in ``bases`` (Z/X/Y) at ``pair.nodes``."""
        a, b = await asyncio.gather(
            *(
                self._memories[n].measure(m, basis)
                for n, m, basis in zip(pair.nodes, pair.modes, bases, strict=True)
            )
        )
        if isinstance(pair, DeliveredPair) and bases[0] == bases[1] and None not in (a, b):
            await self._check_estimate(
                pair, int((a == b) == frames.agree_expected(pair.bell, bases[0]))
            )
        return a, b

    async def _check_estimate(self, pair: DeliveredPair, agreed: int) -> None:
        """Test the estimate against the delivered pairs measured so far: when their
        agreements contradict the estimated fidelities (score test, ``|z| >= CHECK_Z``) and
        a node of the route has its T2 from a calibration, that T2 gives way to the
        controller's stated one (the measurement is preferred to a calibration that may be
        of another unit, e.g. emulated QMC-1s share one serial), said in its ``source``."""
        self._checked.append((agreed, frames.agreement_from_fidelity(pair.estimated_fidelity)))
        if len(self._checked) < CHECK_MIN_PAIRS or self.estimates is None:
            return
        k = sum(x for x, _ in self._checked)
        mean = sum(q for _, q in self._checked)
        var = sum(q * (1.0 - q) for _, q in self._checked)
        z = (k - mean) / math.sqrt(var) if var > 0 else 0.0
        if abs(z) < CHECK_Z:
            return
        route = self.settings.route(*pair.nodes)
        nodes = dict(self.estimates.nodes)
        why = (
            f"contradicted by {len(self._checked)} delivered pairs measured: {k} agreed, "
            f"the estimate expected {mean:.1f}, z {z:+.1f}"
        )
        changed = False
        for node in dict.fromkeys(n for _, a, b in route for n in (a, b)):
            e = nodes.get(node)
            if e is None or not e.source.startswith("calibration "):
                continue
            _, t2 = await self._memories[node].coherence_times_s()
            nodes[node] = NodeEstimate(
                node, float(t2), None, f"stated by the controller ({e.source} {why})"
            )
            changed = True
        if changed:
            self.estimates = replace(self.estimates, nodes=nodes)
            self._checked = []  # the new estimate is tested anew

    async def _storage(self, pair: LinkPair) -> tuple[float, float]:
        a, b = await asyncio.gather(
            *(
                self._memories[n].storage_time_s(m)
                for n, m in zip(pair.nodes, pair.modes, strict=True)
            )
        )
        return float(a), float(b)

    # --- estimates ---

    async def characterise(self, pairs: int | None = None) -> NetworkEstimates:
        """Measure every link: ``pairs`` fresh pairs each, measured at both ends in the same
        random basis (Z, X or Y), give its Bell-diagonal errors; and each node's T2."""
        n = pairs or self.settings.characterisation_pairs
        links = []
        for link in range(len(self.settings.links)):
            links.append(await self._characterise_link(link, n))
        self.estimates = NetworkEstimates(tuple(links), await self._t2_estimates())
        return self.estimates

    async def _characterise_link(self, link: int, n: int) -> LinkEstimate:
        a, b, _ = self.settings.links[link]
        bases = self.rng.integers(0, 3, size=n)
        agree = np.zeros(3, dtype=np.int64)
        counted = np.zeros(3, dtype=np.int64)
        storage = np.zeros(2)
        attempts = 0
        for k in range(n):
            deadline_at = self.clock_s + self.settings.deadline_s
            before = self.attempts[link]
            pair = await self.link_pair(link, deadline_at)
            attempts += self.attempts[link] - before
            storage += await self._storage(pair)
            basis = frames.BASES[int(bases[k])]
            oa, ob = await self.measure(pair, (basis, basis))
            if oa is None or ob is None:
                continue  # nothing read out: the pair tells nothing
            counted[bases[k]] += 1
            agree[bases[k]] += int((oa == ob) == frames.agree_expected(pair.bell, basis))
        with np.errstate(invalid="ignore", divide="ignore"):
            q = agree / counted
        if (counted == 0).any():
            raise RequestTimeout(
                f"characterising link {a}-{b}: no read-out in some basis among {n} pairs"
            )
        errors = frames.from_agreements(float(q[0]), float(q[1]), float(q[2]))
        # binomial errors with p pulled off 0 and 1 (no error seen is not no uncertainty)
        p = (agree + 0.5) / (counted + 1.0)
        std = 0.5 * math.sqrt(float(np.sum(p * (1 - p) / counted)))
        period = await self.attempt_period_s(link)
        return LinkEstimate(
            link=link,
            nodes=(a, b),
            errors=(float(errors[0]), float(errors[1]), float(errors[2]), float(errors[3])),
            fidelity_std=std,
            storage_s=(float(storage[0] / n), float(storage[1] / n)),
            pairs=n,
            attempts=attempts,
            success_probability=n / attempts if attempts else math.nan,
            attempt_period_s=period,
        )

    async def _t2_estimates(self) -> dict[str, NodeEstimate]:
        """Each node's T2: the newest valid memory calibration that measured that node
        (``<node>_t2_s``; ``qhil.calibration.store`` checks the run's success, these
        instruments' identities and ``memory_calibration_max_age_s``), whichever nodes a
        newer calibration measured; else the controller's stated value (a datasheet
        number). ``source`` says which run (or why none)."""
        store: Any = None
        identities: dict[str, str] = {}
        if self.store is not None:
            from qhil.calibration.store import CalibrationStore

            store = CalibrationStore(self.store)
            identities = await self.bench.identities()
        out: dict[str, NodeEstimate] = {}
        for node, memory in self._memories.items():
            name = f"{node}_t2_s"
            why = "no run store"
            if store is not None:
                lookup = store.find(
                    "memory",
                    identities=identities,
                    max_age_s=self.settings.memory_calibration_max_age_s,
                    quantities=(name,),
                )
                cal = lookup.calibration
                if cal is not None and cal.quantities[name].value > 0:
                    q = cal.quantities[name]
                    out[node] = NodeEstimate(node, q.value, q.std, f"calibration {cal.run_id}")
                    continue
                why = lookup.reason if cal is None else f"run {cal.run_id}: {name} <= 0"
            _, t2 = await memory.coherence_times_s()
            out[node] = NodeEstimate(node, float(t2), None, f"stated by the controller ({why})")
        return out

    def predict(self, pairs: Sequence[LinkPair], storage: Sequence[tuple[float, float]]) -> float:
        """Estimated fidelity of the pair the chain ``pairs`` swaps into, each half having
        been stored ``storage`` (its own memory's T2 dephasing beyond the reference)."""
        return float(self._swapped_errors(pairs, storage)[0])

    # --- requests ---

    def route(self, request: EntanglementRequest) -> list[tuple[int, str, str]]:
        ends = self.settings.nodes
        local = request.local if request.local is not None else _other_end(ends, request.remote)
        try:
            return self.settings.route(local, request.remote)
        except ValueError as exc:
            raise EntanglementRequestError(f"request: {exc}", request) from None

    async def create(self, request: EntanglementRequest) -> list[DeliveredPair]:
        """All of the request's pairs, held at once (they must fit the end memories' free
        modes, else NoResources before any attempt)."""
        route = self.route(request)
        ends = (route[0][1], route[-1][2])
        for node in ends:
            free = await self._free_modes(node)
            if free < request.pairs:
                raise NoResources(
                    f"{node}'s memory has {free} free mode(s) for {request.pairs} pair(s) "
                    "held at once (Network.pairs hands them over one at a time)",
                    request,
                )
        return [p async for p in self.pairs(request)]

    async def _free_modes(self, node: str) -> int:
        memory = self._memories[node]
        times = await asyncio.gather(
            *(memory.storage_time_s(m) for m in range(await memory.modes()))
        )
        return sum(1 for t in times if math.isnan(t))

    async def pairs(self, request: EntanglementRequest) -> AsyncIterator[DeliveredPair]:
        """The request's pairs one at a time: the next is made when the consumer asks for
        it (so it can measure or release the last one first)."""
        route = self.route(request)
        min_f = (
            request.min_fidelity if request.min_fidelity is not None else self.settings.min_fidelity
        )
        deadline = (
            request.deadline_s if request.deadline_s is not None else self.settings.deadline_s
        )
        if request.purification_rounds and self.purifier is None:
            raise EntanglementRequestError(
                "request: purification_rounds > 0 but no purification is available", request
            )
        for node in {n for _, a, b in route for n in (a, b)}:
            if not await self._memories[node].power.get():
                raise NoResources(f"{node}'s memory is switched off", request)
        if self.estimates is None:
            await self.characterise()
        assert self.estimates is not None
        requested_at = self.clock_s
        deadline_at = requested_at + deadline
        for link, a, b in route:
            period = await self.attempt_period_s(link)
            if period > deadline:
                raise RequestTimeout(
                    f"request: the deadline {deadline:.6g} s is shorter than one attempt "
                    f"({period:.6g} s) on link {a}-{b}; nothing attempted",
                    request,
                )
        fresh = [self._fresh(link) for link, _, _ in route]
        best = self.predict(fresh, [p.reference_storage_s for p in fresh])
        if best < min_f:
            raise FidelityUnreachable(self._unreachable_text(route, best, min_f), request)
        chance = self.chance_within(route, min_f, deadline)
        if chance < REJECT_BELOW:
            raise FidelityUnreachable(
                f"request rejected: a pair of fidelity >= {min_f:g} within {deadline:.6g} s has "
                f"probability {chance:.2g} (the measured links' success probabilities and T2; "
                f"fresh pairs would give {best:.3f}); nothing attempted",
                request,
            )
        request_id = self._next_request
        self._next_request += 1
        started = requested_at
        for _ in range(request.pairs):
            chain, fidelity = await self._end_to_end(route, request, min_f, deadline_at)
            delivered = await self._deliver(request, request_id, chain, fidelity)
            pair = DeliveredPair(
                pair_id=self._next_pair,
                request_id=request_id,
                purpose_id=request.purpose_id,
                nodes=chain.nodes,
                modes=chain.modes,
                bell=delivered,
                requested_at_s=requested_at,
                started_at_s=started,
                delivered_at_s=self.clock_s,
                estimated_fidelity=fidelity,
            )
            self._next_pair += 1
            started = self.clock_s
            yield pair

    def max_wait_s(self, route: list[tuple[int, str, str]], min_f: float) -> float:
        """The longest time one link's pair may wait for the others (both its halves
        dephasing) with the estimate still >= ``min_f``; -1 if fresh pairs miss it."""
        fresh = [self._fresh(link) for link, _, _ in route]
        ref = [p.reference_storage_s for p in fresh]

        def worst(wait: float) -> float:
            return min(
                self.predict(
                    fresh,
                    [(a + wait, b + wait) if j == i else (a, b) for j, (a, b) in enumerate(ref)],
                )
                for i in range(len(fresh))
            )

        if worst(0.0) < min_f:
            return -1.0
        lo, hi = 0.0, 1.0
        while worst(hi) >= min_f and hi < 1e6:
            lo, hi = hi, hi * 10.0
        for _ in range(60):  # bisection to ~1e-18 relative
            mid = (lo + hi) / 2.0
            lo, hi = (mid, hi) if worst(mid) >= min_f else (lo, mid)
        return lo

    def chance_within(
        self, route: list[tuple[int, str, str]], min_f: float, deadline_s: float
    ) -> float:
        """Probability (estimated) that a pair meeting ``min_f`` is ready within the deadline,
        from the two least likely links: each try heralds both (independent geometric
        attempt counts ``N1``, ``N2`` at the measured success probabilities) and succeeds
        when ``|N1 - N2|`` periods fit the tolerable wait; tries take ``max(N1, N2)``
        periods on average, and at least one is counted."""
        assert self.estimates is not None
        if len(route) < 2:
            return 1.0
        wait = self.max_wait_s(route, min_f)
        if wait < 0:
            return 0.0
        links = sorted(
            (self.estimates.links[i] for i, _, _ in route), key=lambda e: e.success_probability
        )
        p1, p2 = (min(max(e.success_probability, 1e-12), 1.0) for e in links[:2])
        period = max(e.attempt_period_s for e in links[:2])
        q1, q2 = 1.0 - p1, 1.0 - p2
        k = math.floor(wait / period) if period > 0 else MAX_ATTEMPTS
        norm = p1 * p2 / (1.0 - q1 * q2)
        tail = sum(q * (1.0 - q**k) / (1.0 - q) if q < 1.0 else float(k) for q in (q1, q2))
        p_ok = min(1.0, norm * (1.0 + tail))
        try_s = (1.0 / p1 + 1.0 / p2 - 1.0 / (1.0 - q1 * q2)) * period
        # at least one try: a deadline too short for the links' rate is a RequestTimeout
        # to find out by trying, not a fidelity to reject
        tries = max(deadline_s / try_s, 1.0) if try_s > 0 else math.inf
        if p_ok >= 1.0 or tries == math.inf:
            return 1.0
        return float(-math.expm1(tries * math.log1p(-p_ok)))

    def _fresh(self, link: int) -> LinkPair:
        assert self.estimates is not None
        e = self.estimates.links[link]
        return LinkPair(link, e.nodes, (0, 0), "psi+", 0.0, e.errors[0], e.errors, e.storage_s)

    def _unreachable_text(
        self, route: list[tuple[int, str, str]], best: float, min_f: float
    ) -> str:
        assert self.estimates is not None
        links = ", ".join(f"{a}-{b} F={self.estimates.links[i].fidelity:.3f}" for i, a, b in route)
        t2 = ", ".join(
            f"{n} T2={self.estimates.nodes[n].t2_s:.3g} s [{self.estimates.nodes[n].source}]"
            for n in dict.fromkeys(x for _, a, b in route for x in (a, b))
            if n in self.estimates.nodes
        )
        return (
            f"request rejected: estimated fidelity at best {best:.3f} < min_fidelity {min_f:g} "
            f"(measured links: {links}; {t2}); nothing attempted"
        )

    async def _end_to_end(
        self,
        route: list[tuple[int, str, str]],
        request: EntanglementRequest,
        min_f: float,
        deadline_at: float,
    ) -> tuple[LinkPair, float]:
        """One pair over the route, its halves fresh enough for ``min_f``: every link
        heralds at once; a link pair whose wait for the others would cost too much
        fidelity (or that the cutoff emptied) is released and made anew."""
        held: dict[int, LinkPair] = {}
        expired = 0
        try:
            while True:
                await self._herald_missing(route, held, request, deadline_at, expired)
                chain = [held[i] for i, _, _ in route]
                storage = list(await asyncio.gather(*(self._storage(p) for p in chain)))
                gone = [
                    p.link for p, s in zip(chain, storage, strict=True) if any(map(math.isnan, s))
                ]
                if gone:  # the memories' cutoff emptied a half
                    for link in gone:
                        await self.release(held.pop(link))
                        expired += 1
                    continue
                fidelity = self.predict(chain, storage)
                if fidelity < min_f:
                    waits = [max(s) for s in storage]
                    oldest = chain[int(np.argmax(waits))]
                    if all(p.created_at_s == self.clock_s for p in chain):
                        raise FidelityUnreachable(
                            f"request: fresh pairs estimated at {fidelity:.3f} < min_fidelity "
                            f"{min_f:g}",
                            request,
                        )
                    await self.release(held.pop(oldest.link))
                    continue
                swapped = await self._swap_chain(chain, route[0][1])
                held.clear()  # the chain's pairs are consumed (or released) now
                if swapped is None:
                    continue  # a Bell measurement failed: both ends released, again
                return swapped, fidelity
        except BaseException:
            with contextlib.suppress(Exception):  # the request's own error matters more
                for pair in held.values():
                    await self.release(pair)
            raise

    async def _herald_missing(
        self,
        route: list[tuple[int, str, str]],
        held: dict[int, LinkPair],
        request: EntanglementRequest,
        deadline_at: float,
        expired: int,
    ) -> None:
        """Every link without a pair heralds at once; the clock advances by the slowest."""
        missing = [i for i, _, _ in route if i not in held]
        if not missing:
            return
        if request.purification_rounds:
            for link in missing:  # one after the other: rounds need pairs in turn
                held[link] = await self._purified(link, request, deadline_at)
            return
        start = self.clock_s
        results = await asyncio.gather(
            *(self._herald(i, deadline_at - start) for i in missing), return_exceptions=True
        )
        elapsed = [r.elapsed_s for r in results if isinstance(r, HeraldResult)]
        self.clock_s = start + max(elapsed, default=0.0)
        failed: BaseException | None = None
        late = None
        for link, r in zip(missing, results, strict=True):
            if isinstance(r, BaseException):
                failed = failed or r
            elif r is None or not r.success:
                late = late or (link, r)
            else:
                held[link] = self._link_pair(link, r, start + r.elapsed_s)
        if failed is not None:
            raise failed
        if late is not None:
            text = self._timeout_text(late[0], late[1], deadline_at)
            if expired:
                raise ExpiredByCutoff(
                    f"request: {expired} link pair(s) expired by the memories' cutoff while "
                    f"waiting for their partner link, then {text}",
                    request,
                )
            raise RequestTimeout(f"request: {text}", request)

    async def _purified(
        self, link: int, request: EntanglementRequest, deadline_at: float
    ) -> LinkPair:
        assert self.purifier is not None
        keep = await self.link_pair(link, deadline_at)
        rounds = 0
        while rounds < request.purification_rounds:
            sacrifice = await self.link_pair(link, deadline_at)
            kept = await self.purifier(self, keep, sacrifice)
            if kept is None:
                keep, rounds = await self.link_pair(link, deadline_at), 0
            else:
                keep, rounds = kept, rounds + 1
        return keep

    async def swap(self, first: LinkPair, second: LinkPair) -> LinkPair | None:
        """Entanglement swapping at the node the two pairs share; the outer pair (``link``
        -1), or None when the Bell measurement failed (the outer halves released)."""
        shared = set(first.nodes) & set(second.nodes)
        if len(shared) != 1:
            raise ValueError(f"pairs {first.nodes} and {second.nodes} share no single node")
        node = shared.pop()
        storage = await asyncio.gather(self._storage(first), self._storage(second))
        outcome = await self._memories[node].bell_measure(first.mode_at(node), second.mode_at(node))
        ends = (first.other(node), second.other(node))
        modes = (first.mode_at(ends[0]), second.mode_at(ends[1]))
        if outcome is None:
            with contextlib.suppress(Exception):
                await asyncio.gather(
                    *(self._memories[n].measure(m, "Z") for n, m in zip(ends, modes, strict=True))
                )
            return None
        # the outer halves' storage so far becomes the new reference: the estimate's
        # dephasing is in the errors now
        ref = (
            storage[0][first.nodes.index(ends[0])],
            storage[1][second.nodes.index(ends[1])],
        )
        v = self._swapped_errors([first, second], storage)
        return LinkPair(
            -1,
            ends,
            modes,
            frames.compose(first.bell, outcome, second.bell),
            self.clock_s,
            float(v[0]),
            (float(v[0]), float(v[1]), float(v[2]), float(v[3])),
            ref,
        )

    def _swapped_errors(
        self, pairs: Sequence[LinkPair], storage: Sequence[tuple[float, float]]
    ) -> frames.Vector:
        """The chain's errors after its swaps, each pair dephased for its halves' storage."""
        nodes = self.estimates.nodes if self.estimates is not None else {}
        v: frames.Vector | None = None
        for pair, held in zip(pairs, storage, strict=True):
            c = 1.0
            for node, s, ref in zip(pair.nodes, held, pair.reference_storage_s, strict=True):
                t2 = nodes[node].t2_s if node in nodes else math.inf
                c *= frames.coherence(s - ref, t2)
            w = frames.dephase(pair.error_vector(), c)
            v = w if v is None else frames.swap(v, w)
        assert v is not None
        return v

    async def _swap_chain(self, chain: list[LinkPair], local: str) -> LinkPair | None:
        current = chain[0]
        for nxt in chain[1:]:
            swapped = await self.swap(current, nxt)
            if swapped is None:
                for rest in chain[chain.index(nxt) + 1 :]:
                    await self.release(rest)
                return None
            current = swapped
        if current.nodes[0] != local:  # orient (local, remote); Bell states are symmetric
            current = replace(
                current,
                nodes=current.nodes[::-1],
                modes=current.modes[::-1],
                reference_storage_s=current.reference_storage_s[::-1],
            )
        return current

    async def _deliver(
        self, request: EntanglementRequest, request_id: int, chain: LinkPair, fidelity: float
    ) -> str:
        if request.frame == "track" or chain.bell == "phi+":
            return chain.bell
        await self._memories[chain.nodes[1]].pauli(chain.modes[1], frames.CORRECTION[chain.bell])
        return "phi+"


def _other_end(nodes: list[str], remote: str) -> str:
    """The network path's end other than ``remote`` (the first node if remote is inside)."""
    if nodes and nodes[0] != remote:
        return nodes[0]
    return nodes[-1]


def _memory_name(nodes: Any, node: str, name: str | None) -> str:
    """The name a station reports for ``node``'s memory: its instrument's ``component``
    (the world component, or what a lab station is configured to call it), else
    ``<node>.<instrument>``."""
    from qhil.catalogue import CATALOGUE

    specs = nodes[node].instruments
    found = [
        (i, spec)
        for i, spec in specs.items()
        if (name is None or i == name) and "NetworkMemory" in CATALOGUE[spec.model].roles
    ]
    if len(found) != 1:  # the profile's check names this case; nothing to compare with here
        return f"{node}.{name or 'memory'}"
    i, spec = found[0]
    return str(spec.component or f"{node}.{i}")


def _bench_seed(bench: Any) -> int | None:
    seed = getattr(getattr(getattr(bench, "profile", None), "bench", None), "seed", None)
    return int(seed) if isinstance(seed, int) else None


@contextlib.asynccontextmanager
async def open_network(
    profile: Any = None,
    overrides: Sequence[str] = (),
    *,
    mode: str | None = None,
    data_dir: str | Path | None = None,
) -> AsyncIterator[Network]:
    """The bench of ``profile`` opened, and a Network over its ``[experiments.network]``."""
    from qhil.orchestrator.bench import open_bench
    from qhil.orchestrator.profile import Profile, load_profile
    from qhil.records import RunStore

    prof = profile if isinstance(profile, Profile) else load_profile(profile, list(overrides))
    settings = NetworkSettings.from_profile(prof)
    async with open_bench(prof, mode=mode) as bench:
        network = Network(bench, settings, store=RunStore(data_dir))
        await network.check_wiring()
        yield network


__all__ = [
    "DeliveredPair",
    "EntanglementRequest",
    "LinkEstimate",
    "LinkPair",
    "Network",
    "NetworkEstimates",
    "NodeEstimate",
    "Purifier",
    "open_network",
]
