"""``qhil ping NODE_A NODE_B``: is there a quantum connection, like ICMP ping for pairs.

Each probe is one entanglement request of ``pairs_per_probe`` pairs; a random sample of
the delivered pairs (``sample_fraction``) is measured at both ends in the same random
basis, Z, X or Y. With the basis drawn uniformly, a pair's outcomes agree (as its Bell
state says they should) with probability ``q = (1 + 2 F) / 3`` for any Bell-diagonal
pair of fidelity F, so each measured pair is one Bernoulli trial of ``q``:

- per probe line: the Clopper-Pearson one-sided lower bound on F (at ``confidence``)
  from every pair measured so far;
- the verdict: Wald's sequential probability ratio test of ``F = min + delta``
  (reachable) against ``F = min``, error rates ``alpha`` / ``beta``, on the
  pairs in the order measured. SPRT because the pairs come one by one and the test
  stays valid however many are looked at (a fixed-sample bound checked after every
  probe would not), and it needs the fewest pairs on average for its error rates. A
  link never decided within the probes is reported unreachable as "undecided".

The default threshold is F = 1/2: a Bell-diagonal pair is entangled iff F > 1/2.
Each probe's request asks for that minimum: a route whose estimate from the measured
links and memories cannot reach it (e.g. T2 far below the herald round trip) is rejected
before any attempt (FidelityUnreachable), and the ping says so, with the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qhil.errors import ConfigError
from qhil.orchestrator.experiments.network import frames
from qhil.orchestrator.experiments.network.errors import EntanglementRequestError
from qhil.orchestrator.experiments.network.link_layer import EntanglementRequest, Network
from qhil.orchestrator.experiments.network.settings import NetworkSettings, PingSettings

#: ``probes`` array of a ping run: one row per probe.
PROBE_DTYPE = np.dtype(
    [
        ("probe", np.int32),
        ("requested", np.int32),
        ("delivered", np.int32),
        ("measured", np.int32),
        ("agree", np.int32),
        ("latency_s", np.float64),  # mean over the probe's pairs (NaN: none)
        ("estimated_fidelity", np.float64),  # mean estimate of its pairs (NaN: none)
        ("fidelity", np.float64),  # cumulative point estimate
        ("lower_bound", np.float64),  # cumulative one-sided lower bound on F
        ("clock_s", np.float64),  # network clock at the probe's end
    ]
)
#: ``outcomes`` array: one row per measured pair.
OUTCOME_DTYPE = np.dtype(
    [
        ("probe", np.int32),
        ("pair_id", np.int64),
        ("basis", np.int8),  # 0 Z, 1 X, 2 Y
        ("agree", np.bool_),
        ("estimated_fidelity", np.float64),
        ("latency_s", np.float64),
    ]
)


@dataclass
class Probe:
    """One probe's line."""

    probe: int
    requested: int
    delivered: int
    measured: int
    agree: int
    latency_s: float
    estimated_fidelity: float
    fidelity: float
    lower_bound: float
    confidence: float
    clock_s: float
    error: str | None = None
    #: The earlier probe (1-based) that ended with the same error: its line is not repeated.
    same_error_as: int | None = None

    def row(self) -> np.ndarray:
        out = np.zeros(1, dtype=PROBE_DTYPE)
        for name in PROBE_DTYPE.names or ():
            out[name] = getattr(self, name)
        return out

    def line(self) -> str:
        head = f"probe {self.probe + 1}: {self.delivered}/{self.requested} pairs"
        error = self.error
        if error and self.same_error_as is not None:
            error = f"the error of probe {self.same_error_as} again"
        if self.delivered == 0:
            return f"{head}, {error or 'none delivered'}"
        text = (
            f"{head}, {self.measured} measured, F >= {self.lower_bound:.3f} "
            f"({self.confidence:.0%}, all so far), latency {self.latency_s * 1e3:.3g} ms"
        )
        return text + (f"; then {error}" if error else "")


@dataclass
class PingReport:
    local: str
    remote: str
    reachable: bool
    reason: str
    probes: list[Probe] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)


def check_nodes(
    settings: NetworkSettings,
    local: str,
    remote: str,
    options: tuple[str, str] = ("NODE_A", "NODE_B"),
) -> None:
    """The two ends of a request from the command line (``options`` name them in the
    ConfigError): nodes of the network, and two different ones."""
    known = settings.nodes
    for arg, node in zip(options, (local, remote), strict=True):
        if node not in known:
            raise ConfigError(
                "<command line>", arg, f"no node {node!r} on the network ({', '.join(known)})"
            )
    if local == remote:
        raise ConfigError("<command line>", options[1], f"{remote!r} is {options[0]} itself")


def check_min_fidelity(
    value: float, option: str = "--min-fidelity", *, below_1: bool = False
) -> None:
    """A fidelity threshold from the command line: finite, in 0 .. 1 (``below_1``: < 1)."""
    if not (math.isfinite(value) and 0.0 <= value <= 1.0) or (below_1 and value >= 1.0):
        span = "[0, 1)" if below_1 else "[0, 1]"
        raise ConfigError("<command line>", option, f"{value!r} is not a fidelity in {span}")


def ping_settings(
    settings: NetworkSettings, count: int | None, min_fidelity: float | None
) -> PingSettings:
    """The profile's ping settings with the command line's values (ConfigError naming the
    option)."""
    from pydantic import ValidationError

    data = settings.ping.model_dump()
    for option, name, value in (
        ("--count", "count", count),
        ("--min-fidelity", "min_fidelity", min_fidelity),
    ):
        if value is None:
            continue
        if name == "min_fidelity":
            check_min_fidelity(float(value), option, below_1=True)
        try:
            PingSettings.model_validate({**data, name: value})
        except ValidationError as exc:
            msg = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            raise ConfigError("<command line>", option, msg) from None
        data[name] = value
    return PingSettings.model_validate(data)


async def ping(
    network: Network,
    local: str,
    remote: str,
    s: PingSettings,
    *,
    deadline_s: float,
    on_probe: Callable[[Probe], None] | None = None,
    on_outcomes: Callable[[np.ndarray], object] | None = None,
) -> PingReport:
    """Probe the connection from ``local`` to ``remote``; the verdict and its numbers."""
    rng = network.rng
    sprt = frames.Sprt(s.min_fidelity, s.delta, s.alpha, s.beta)
    try:
        if network.estimates is None:
            await network.characterise()
    except EntanglementRequestError as exc:
        reason = f"the links could not be measured: {type(exc).__name__}: {exc}"
        early: dict[str, Any] = {
            "reachable": False,
            "reason": reason,
            "local": local,
            "remote": remote,
            "threshold": s.min_fidelity,
            "probes": 0,
            "pairs_requested": 0,
            "pairs_delivered": 0,
            "pairs_measured": 0,
            "errors": 1,
        }
        return PingReport(local, remote, False, reason, results=early)
    start = network.clock_s
    probes: list[Probe] = []
    agree_all = measured_all = delivered_all = 0
    latencies: list[float] = []
    estimates: list[float] = []
    errors: list[str] = []
    first_with: dict[str, int] = {}  # error text -> the first probe (1-based) ending with it
    for k in range(s.count):
        request = EntanglementRequest(
            remote=remote,
            local=local,
            pairs=s.pairs_per_probe,
            min_fidelity=s.min_fidelity,
            deadline_s=deadline_s,
            purpose_id=k,
        )
        rows: list[tuple[int, int, int, bool, float, float]] = []
        lat: list[float] = []
        est: list[float] = []
        delivered = 0
        error = None
        try:
            async for pair in network.pairs(request):
                delivered += 1
                lat.append(pair.latency_s)
                est.append(pair.estimated_fidelity)
                if rng.random() >= s.sample_fraction:
                    await network.release(pair)
                    continue
                b = int(rng.integers(3))
                basis = frames.BASES[b]
                oa, ob = await network.measure(pair, (basis, basis))
                if oa is None or ob is None:
                    continue  # a read-out failed: the pair tells nothing
                ok = (oa == ob) == frames.agree_expected(pair.bell, basis)
                rows.append((k, pair.pair_id, b, ok, pair.estimated_fidelity, pair.latency_s))
        except EntanglementRequestError as exc:
            error = f"{type(exc).__name__}: {exc}"
            errors.append(error)
        outcomes = np.array(rows, dtype=OUTCOME_DTYPE)
        sprt.update(outcomes["agree"])
        agree_all += int(outcomes["agree"].sum())
        measured_all += len(rows)
        delivered_all += delivered
        latencies += lat
        estimates += est
        lower, _ = frames.fidelity_bounds(agree_all, measured_all, s.confidence)
        point = (
            frames.fidelity_from_agreement(agree_all / measured_all) if measured_all else math.nan
        )
        probe = Probe(
            probe=k,
            requested=s.pairs_per_probe,
            delivered=delivered,
            measured=len(rows),
            agree=int(outcomes["agree"].sum()),
            latency_s=float(np.mean(lat)) if lat else math.nan,
            estimated_fidelity=float(np.mean(est)) if est else math.nan,
            fidelity=point,
            lower_bound=lower,
            confidence=s.confidence,
            clock_s=network.clock_s,
            error=error,
            same_error_as=None if error is None else first_with.get(error),
        )
        if error is not None:
            first_with.setdefault(error, k + 1)
        probes.append(probe)
        if on_outcomes is not None and len(rows):
            on_outcomes(outcomes)
        if on_probe is not None:
            on_probe(probe)
    elapsed = network.clock_s - start
    lower, upper = frames.fidelity_bounds(agree_all, measured_all, s.confidence)
    fidelity = (
        frames.fidelity_from_agreement(agree_all / measured_all) if measured_all else math.nan
    )
    verdict = _verdict(sprt, s, measured_all, fidelity, lower, upper, errors, delivered_all)
    results: dict[str, Any] = {
        "reachable": verdict[0],
        "reason": verdict[1],
        "local": local,
        "remote": remote,
        "threshold": s.min_fidelity,
        "probes": len(probes),
        "pairs_requested": s.count * s.pairs_per_probe,
        "pairs_delivered": delivered_all,
        "pairs_measured": measured_all,
        "pairs_agree": agree_all,
        "fidelity": fidelity,
        "fidelity_std": _fidelity_std(agree_all, measured_all),
        "fidelity_lower": lower if measured_all else math.nan,
        "fidelity_upper": upper if measured_all else math.nan,
        "confidence": s.confidence,
        "estimated_fidelity": float(np.mean(estimates)) if estimates else math.nan,
        "rate_pairs_per_s": delivered_all / elapsed if elapsed > 0 else math.nan,
        "latency_mean_s": float(np.mean(latencies)) if latencies else math.nan,
        "latency_min_s": float(np.min(latencies)) if latencies else math.nan,
        "latency_max_s": float(np.max(latencies)) if latencies else math.nan,
        "bench_s": elapsed,  # the network clock: bench time (emulated or lab)
        "sprt_llr": sprt.llr,
        "sprt_decided_after": sprt.decided_after,
        "sprt_alpha": s.alpha,
        "sprt_beta": s.beta,
        "sprt_delta": s.delta,
        "errors": len(errors),
    }
    if network.estimates is not None:
        results.update(network.estimates.as_results())
    return PingReport(local, remote, verdict[0], verdict[1], probes, results)


def _fidelity_std(k: int, n: int) -> float:
    if n == 0:
        return math.nan
    q = (k + 0.5) / (n + 1.0)
    return 1.5 * math.sqrt(q * (1 - q) / n)


def _verdict(
    sprt: frames.Sprt,
    s: PingSettings,
    n: int,
    fidelity: float,
    lower: float,
    upper: float,
    errors: list[str],
    delivered: int = 0,
) -> tuple[bool, str]:
    test = (
        f"SPRT F >= {s.min_fidelity + s.delta:.3g} against F <= {s.min_fidelity:.3g}, "
        f"alpha {s.alpha:g}, beta {s.beta:g}"
    )
    if n == 0:
        if delivered:
            failed = f"; {len(errors)} probe(s) failed, first: {errors[0]}" if errors else ""
            return False, (
                f"no pair measured: {delivered} delivered, none sampled or every read-out "
                f"failed{failed}"
            )
        if not errors:
            return False, "no pair delivered: no request succeeded"
        alike = len(set(errors)) == 1
        count = (
            f"; all {len(errors)} probes ended so"
            if alike
            else f"; {len(errors)} probes failed, {len(set(errors))} different errors"
        )
        return False, f"no pair delivered: {errors[0]}{count if len(errors) > 1 else ''}"
    measured = (
        f"measured F = {fidelity:.3f} ({lower:.3f} .. {upper:.3f} at {s.confidence:.0%} each side)"
    )
    if sprt.decision is True:
        return True, f"{test}: reachable after {sprt.decided_after} pairs; {measured}"
    if sprt.decision is False:
        return False, (
            f"fidelity below the threshold {s.min_fidelity:g}: {test}: not reachable after "
            f"{sprt.decided_after} pairs; {measured}"
        )
    more = f"; {len(errors)} probe(s) failed, first: {errors[0]}" if errors else ""
    return False, (
        f"undecided after {n} pairs ({test}); {measured}; more probes (--count) decide{more}"
    )


# --- the recorded job -----------------------------------------------------------------


@dataclass
class PingSummary:
    run_id: str
    status: str
    reachable: bool
    reason: str
    probes: list[Probe]
    results: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        clean = _finite
        return {
            "run_id": self.run_id,
            "status": self.status,
            "reachable": self.reachable,
            "reason": self.reason,
            **{k: clean(v) for k, v in self.results.items() if k not in ("reachable", "reason")},
            "probe_lines": [{k: clean(v) for k, v in p.__dict__.items()} for p in self.probes],
        }


def job(
    node_a: str,
    node_b: str,
    profile: str | None,
    overrides: list[str],
    *,
    count: int | None = None,
    min_fidelity: float | None = None,
    data_dir: str | Path | None = None,
    mode: str | None = None,
    on_probe: Callable[[Probe], None] | None = None,
) -> Coroutine[Any, Any, PingSummary]:
    """Check everything that can be checked before the bench opens (ConfigError naming
    the field or option), then the coroutine of the recorded run (kind ``ping``)."""
    from qhil.orchestrator.profile import load_profile

    prof = load_profile(profile if profile is not None else "repeater", overrides)
    settings = NetworkSettings.from_profile(prof)
    check_nodes(settings, node_a, node_b)
    s = ping_settings(settings, count, min_fidelity)
    return _run(prof, settings, s, node_a, node_b, data_dir, mode, on_probe)


async def _run(
    prof: Any,
    settings: NetworkSettings,
    s: PingSettings,
    local: str,
    remote: str,
    data_dir: str | Path | None,
    mode: str | None,
    on_probe: Callable[[Probe], None] | None,
) -> PingSummary:
    from qhil.orchestrator.bench import open_bench
    from qhil.orchestrator.jobs import writable_run_store

    store = writable_run_store(data_dir)  # before any instrument is opened
    parameters = {
        "local": local,
        "remote": remote,
        "ping": s.model_dump(mode="json"),
        "network": settings.model_dump(mode="json", exclude={"ping"}),
    }
    run = store.start_run(
        "ping",
        profile=prof,
        profile_source=prof.source,
        seed=prof.bench.seed,
        parameters=parameters,
    )
    with run:
        async with open_bench(prof, mode=mode) as bench:
            run.set_identities(await bench.identities())
            network = Network(bench, settings, store=store)

            def probe_done(p: Probe) -> None:
                run.append("probes", p.row())
                if on_probe is not None:
                    on_probe(p)

            report = await ping(
                network,
                local,
                remote,
                s,
                deadline_s=s.deadline_s or settings.deadline_s,
                on_probe=probe_done,
                on_outcomes=lambda rows: run.append("outcomes", rows),
            )
        run.log_results({k: _finite(v) for k, v in report.results.items() if _scalar(v)})
    return PingSummary(
        run.run_id, "success", report.reachable, report.reason, report.probes, report.results
    )


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _num(v: Any, fmt: str) -> str:
    return "-" if v is None or not math.isfinite(v) else fmt.format(v)


def summary_lines(summary: PingSummary) -> list[str]:
    """The human summary after the probe lines (as ``ping``'s statistics block)."""
    r = summary.results
    local, remote = r.get("local"), r.get("remote")

    def ms(key: str) -> str:
        v = r.get(key)
        return _num(None if v is None else v * 1e3, "{:.3g}")

    fid = r.get("fidelity")
    lines = [
        f"--- {local} -> {remote} entanglement ping (run {summary.run_id}) ---",
        f"{r.get('probes')} probes, {r.get('pairs_delivered')}/{r.get('pairs_requested')} pairs "
        f"delivered, {r.get('pairs_measured')} measured, rate "
        f"{_num(r.get('rate_pairs_per_s'), '{:.4g}')} pairs/s (bench time)",
    ]
    if fid is not None and math.isfinite(fid):
        lines.append(
            f"fidelity {fid:.3f} +- {r['fidelity_std']:.3f}, >= {r['fidelity_lower']:.3f} at "
            f"{r['confidence']:.0%} (Clopper-Pearson); estimated {r['estimated_fidelity']:.3f}"
        )
    lines.append(
        f"latency min/mean/max {ms('latency_min_s')}/{ms('latency_mean_s')}/"
        f"{ms('latency_max_s')} ms"
    )
    lines.append(f"{'reachable' if summary.reachable else 'UNREACHABLE'}: {summary.reason}")
    return lines


__all__ = [
    "OUTCOME_DTYPE",
    "PROBE_DTYPE",
    "PingReport",
    "PingSummary",
    "Probe",
    "job",
    "ping",
    "ping_settings",
    "summary_lines",
]
