"""hw_profiles/entanglement.toml: the emulated entangled-photon bench (issues 9 and 10).

The profile loads, lists and validates like the others, and a malformed copy names the field
and the file. Opened through the orchestrator's bench, with a pump switched on through its
driver, the two nodes' TDC1 streams (TimeTagger role) hold the coincidences the profile's
numbers predict (PHYSICS.md: pair rate x heralding efficiencies x fibre transmissions x
detector efficiencies, case 3 for the accidentals), at the delay the world's truth gives, and
the source-site pairs are polarization-correlated with the configured visibility. The two-way
sources give the two peaks of the symmetric method, theta + d and theta - d.

Every statistical bound is two-sided at 99.9 % (|z| < 3.29), seeds fixed (the profile's).
"""

from __future__ import annotations

import asyncio
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from click.testing import CliRunner

from qhil.cli import main
from qhil.drivers.roles import EntangledPhotonSource, PolarizationController, TimeTagger
from qhil.drivers.sfifteen.spdc import SPDCSource
from qhil.emulators.bench import EmulatedBench
from qhil.emulators.sfifteen.timebase import stream_offset_ps, stream_origin
from qhil.emulators.world import World
from qhil.emulators.world.config import load_world_config
from qhil.emulators.world.quantum import states
from qhil.orchestrator.bench import Bench, open_bench
from qhil.orchestrator.profile import EMULATED, load_profile

REPO = Path(__file__).parents[2]
PROFILE = REPO / "hw_profiles" / "entanglement.toml"
LAB = REPO / "hw_profiles" / "lab_entanglement.toml"
DATA = tomllib.loads(PROFILE.read_text())
WORLD = DATA["world"]
Z = 3.29  # two-sided 99.9 %
HALF_WINDOW_PS = 3_000  # TDC1 stream times are 2 ns ticks: every true pair lies within +-2 ns
LABELS = ("H", "V", "D", "A")  # TDC1 inputs 1..4 at both nodes
# (Stokes axis index, sign) of each output: H/V on S1, D/A on S2.
OUTPUTS = {"H": (0, 1), "V": (0, -1), "D": (1, 1), "A": (1, -1)}
SOURCE_CURRENT_MA = 40.0
TWOWAY_CURRENT_MA = 30.0

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


# -- the profile's numbers (read from the file, not from the world) ---------------------------


def _comp(qname: str) -> dict[str, Any]:
    node, name = qname.split(".")
    comp: dict[str, Any] = WORLD["nodes"][node]["components"][name]
    return comp


def _link_transmission(name: str) -> float:
    link = WORLD["links"][name]
    return 10 ** (-(link["alpha_db_per_km"] * link["length_km"] + link["insertion_loss_db"]) / 10)


def _pair_rate_hz(source: str, current_ma: float) -> float:
    s = _comp(source)
    return s["pairs_per_s_per_mw"] * s["slope_mw_per_ma"] * (current_ma - s["threshold_current_ma"])


def _arm(node: str, link: str | None) -> tuple[float, F64, float]:
    """(transmission source -> detectors, detector efficiencies H V D A, PBS contrast)."""
    an = _comp(f"{node}.analyzer")
    t = 10 ** (-an["insertion_loss_db"] / 10) * (1.0 if link is None else _link_transmission(link))
    if link is not None and link.startswith("source-"):  # the pairs pass the node's HWP too
        t *= 10 ** (-_comp(f"{node}.hwp")["insertion_loss_db"] / 10)
    eff = np.array([_comp(f"{node}.det_{x.lower()}")["efficiency"] for x in LABELS])
    contrast = 1 - 2 / (1 + 10 ** (an["pbs_extinction_ratio_db"] / 10))
    return t, eff, contrast


def _joint_probabilities(
    visibility: float, contrast_a: float, contrast_b: float, plates_deg: float = 0.0
) -> F64:
    """P(photon A reaches output i, photon B reaches output j) for phi+ with white noise on
    compensated paths: Stokes correlations T = V diag(1, 1, -1), 50:50 basis choice. Half-wave
    plates whose axes differ by ``plates_deg`` (A's minus B's) in front of the analysers turn
    the linear block by 4 x that: HH and DD correlate by cos, HD and DH by -/+ sin."""
    c, s = math.cos(math.radians(4 * plates_deg)), math.sin(math.radians(4 * plates_deg))
    corr = visibility * np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, -1.0]])
    p = np.empty((4, 4))
    for i, x in enumerate(LABELS):
        for j, y in enumerate(LABELS):
            (ax, sx), (ay, sy) = OUTPUTS[x], OUTPUTS[y]
            p[i, j] = 0.25 * 0.25 * (1 + sx * sy * contrast_a * contrast_b * corr[ax, ay])
    return p


def _predicted_matrix(
    source: str, current_ma: float, arm_a: tuple[str, str | None], arm_b: tuple[str, str | None]
) -> F64:
    """Expected true coincidences per second between A's output i and B's output j."""
    s = _comp(source)
    ta, eff_a, ca = _arm(*arm_a)
    tb, eff_b, cb = _arm(*arm_b)
    # The mounts at home: each plate's axis is its zero offset.
    plates = [_comp(f"{arm[0]}.hwp").get("zero_offset_deg", 0.0) for arm in (arm_a, arm_b)]
    p = _joint_probabilities(s["visibility"], ca, cb, plates[0] - plates[1])
    herald = s["heralding_efficiency_signal"] * s["heralding_efficiency_idler"]
    return _pair_rate_hz(source, current_ma) * herald * ta * tb * p * np.outer(eff_a, eff_b)


# -- through the bench -------------------------------------------------------------------------


@dataclass
class Streams:
    """Two nodes' streams of one acquisition and the truth needed to read them."""

    a: tuple[I64, npt.NDArray[Any]]
    b: tuple[I64, npt.NDArray[Any]]
    duration_s: float
    offset_at: Any  # t_a (ps) -> stream offset B - A (ps), the world's truth
    path_delay_ps: dict[tuple[str, str], float]  # (source, detector) -> group delay (truth)
    drift_b: float


def _spdc(bench: Bench, node: str, name: str) -> SPDCSource:
    driver = bench.instrument(node, name)
    assert isinstance(driver, SPDCSource)
    assert isinstance(bench.role(node, EntangledPhotonSource, name), SPDCSource)
    return driver


async def _switch_on(bench: Bench, node: str, name: str, current_ma: float) -> None:
    """Pump on through the driver, as an experiment does (without the 50 ms ramp waits)."""
    source = _spdc(bench, node, name)
    source.ramp_interval_s = 0.0
    await source.set_output(True)
    await source.set_pump_current_ma(current_ma)


async def _acquire(
    pumps: dict[tuple[str, str], float], duration_s: float, overrides: tuple[str, ...] = ()
) -> Streams:
    profile = load_profile(str(PROFILE), list(overrides))
    with EmulatedBench(profile) as emulated:
        world = emulated.world
        bench = Bench(profile, emulated.addresses(), emulated.extra_addresses())
        await bench.connect(timeout_s=30)
        try:
            await bench.configure()
            for (node, name), ma in pumps.items():
                await _switch_on(bench, node, name, ma)
            # Compensate each node's fibre for the source-site pairs (the truth's voltages,
            # set through the EPC-400s): what a polarization calibration would leave.
            for node, leg in (("alice", "source.pairs.signal"), ("bob", "source.pairs.idler")):
                volts = world.truth.compensating_voltages(f"{node}.polctrl", leg)
                await bench.role(node, PolarizationController).set_voltages_mv(
                    [round(float(v)) for v in volts]
                )
            ta, tb = bench.role("alice", TimeTagger), bench.role("bob", TimeTagger)
            block_a, block_b = await asyncio.gather(ta.acquire(duration_s), tb.acquire(duration_s))
            origin_a = stream_origin(emulated.emulators[("alice", "tagger")])
            origin_b = stream_origin(emulated.emulators[("bob", "tagger")])
        finally:
            await bench.close()
        grid = np.linspace(0.0, duration_s * 1e12, 11)
        truth = stream_offset_ps(world, origin_a, origin_b, grid)
        delays = {
            (src, f"{node}.det_{x.lower()}"): world.truth.path_delay_s(
                src, f"{node}.det_{x.lower()}"
            )
            * 1e12
            for src in ("source.pairs", "alice.twoway_pairs", "bob.twoway_pairs")
            for node in ("alice", "bob")
            for x in LABELS
        }
        drift_b = world.truth.clock_drift_ppm("bob") * 1e-6
    return Streams(
        (block_a.timestamps_ps, block_a.channels),
        (block_b.timestamps_ps, block_b.channels),
        duration_s,
        lambda t: np.interp(t, grid, truth),
        delays,
        drift_b,
    )


def _coincidences(streams: Streams, expected_ps: F64) -> tuple[F64, F64]:
    """(4x4 counts of A output i with B output j, B - A residuals) of the pairs found within
    +-HALF_WINDOW_PS of ``expected_ps`` (per A tag: the predicted B - A)."""
    (t_a, ch_a), (t_b, ch_b) = streams.a, streams.b
    centre = t_a + expected_ps
    lo = np.searchsorted(t_b, centre - HALF_WINDOW_PS, side="left")
    hi = np.searchsorted(t_b, centre + HALF_WINDOW_PS, side="right")
    n = hi - lo
    ia = np.repeat(np.arange(t_a.size), n)
    ib = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(int(n.sum()))
    counts = np.zeros((4, 4))
    np.add.at(counts, (ch_a[ia] - 1, ch_b[ib] - 1), 1)
    return counts, (t_b[ib] - t_a[ia] - expected_ps[ia]).astype(float)


def _expected_delta(streams: Streams, source: str, det_a: str, det_b: str) -> F64:
    """Predicted B - A of a pair (truth): the stream offset at A's tag plus the path-delay
    difference, the latter counted on B's clock."""
    t_a = streams.a[0]
    path = streams.path_delay_ps[(source, det_b)] - streams.path_delay_ps[(source, det_a)]
    return np.asarray(streams.offset_at(t_a) + path * (1 + streams.drift_b), dtype=float)


def _singles_hz(streams: Streams) -> tuple[F64, F64]:
    per = [
        np.bincount(ch, minlength=5)[1:] / streams.duration_s for _, ch in (streams.a, streams.b)
    ]
    return per[0], per[1]


# -- the profile as a file ---------------------------------------------------------------------


def test_the_profile_describes_the_entanglement_bench() -> None:
    profile = load_profile("entanglement")
    assert profile.world is not None
    cfg = load_world_config(profile.world, profile.source)
    assert set(profile.nodes) == set(cfg.nodes) == {"source", "alice", "bob"}
    links = {name: (link.a, link.b, link.length_km) for name, link in cfg.links.items()}
    assert links == {
        "source-alice": ("source", "alice", 1.0),
        "source-bob": ("source", "bob", 10.0),
        "alice-bob": ("alice", "bob", 11.0),
    }
    comps = cfg.components()
    sources = {q: c for q, c in comps.items() if c.type == "spdc_source"}
    assert set(sources) == {"source.pairs", "alice.twoway_pairs", "bob.twoway_pairs"}
    # Every pump is off at power-on; the experiment switches it on through its driver.
    assert all(c.pump_current_ma == 0.0 for c in sources.values())
    for q in sources:
        node, name = q.split(".")
        assert profile.nodes[node].instruments[name].model == "sfifteen.spdc"
        assert profile.nodes[node].instruments[name].component == q
    # The two-way sources send their partners over the same fibre in opposite directions.
    assert sources["alice.twoway_pairs"].idler_path == ["alice-bob", "bob.analyzer"]
    assert sources["bob.twoway_pairs"].idler_path == ["alice-bob", "alice.analyzer"]
    for node in ("alice", "bob"):
        clock = cfg.nodes[node]
        assert abs(clock.clock_offset_s) <= 0.5 and abs(clock.clock_drift_ppm) <= 100
        assert 0 < clock.clock_wander_ppb_per_sqrt_s <= 10  # a free-running crystal's
        wiring = {
            comps[f"{node}.det_{x.lower()}"].channel: x for x in LABELS
        }  # TDC1 inputs 1..4 = H V D A
        assert wiring == dict(enumerate(LABELS, start=1))
        assert all(comps[f"{node}.det_{x.lower()}"].tagger == "tagger" for x in LABELS)
        assert profile.nodes[node].instruments["tagger"].model == "sfifteen.tdc1"


def test_the_lab_variant_is_the_same_bench_at_lab_addresses() -> None:
    emulated, lab = load_profile("entanglement"), load_profile("lab_entanglement")
    assert lab.world is None
    assert [(n, i) for n, i, _ in lab.instruments()] == [
        (n, i) for n, i, _ in emulated.instruments()
    ]
    for (_, _, mine), (_, _, theirs) in zip(lab.instruments(), emulated.instruments(), strict=True):
        assert mine.resource != EMULATED
        assert (mine.model, mine.settings) == (theirs.model, theirs.settings)


def test_profile_list_and_show_validate_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    listed = runner.invoke(main, ["profile", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    entries = {e["name"]: e for e in json.loads(listed.output)}
    assert entries["entanglement"]["bench"] == "entanglement-emulated"
    assert entries["lab_entanglement"]["bench"] == "lab-entanglement"
    assert entries["entanglement"]["error"] is entries["lab_entanglement"]["error"] is None
    for name, bench in (
        ("entanglement", "entanglement-emulated"),
        ("lab_entanglement", "lab-entanglement"),
    ):
        shown = runner.invoke(main, ["profile", "show", name])
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.output)["bench"]["name"] == bench


@pytest.mark.parametrize(
    ("old", "new", "field", "problem"),
    [
        (
            "heralding_efficiency_idler = 0.33",
            "heralding_efficiency_idler = 1.33",
            "world.nodes.source.components.pairs.heralding_efficiency_idler",
            "must be <= 1",
        ),
        (
            'idler_path = ["alice-bob", "alice.analyzer"]',
            'idler_path = ["source-alice", "alice.analyzer"]',
            "world.nodes.bob.components.twoway_pairs.idler_path[0]",
            "but the light is at bob",
        ),
        (
            "clock_drift_ppm = -31.6",
            "clock_drift_pmm = -31.6",
            "world.nodes.bob.clock_drift_pmm",
            "is not a known field",
        ),
        (
            "settings = { crystal_temperature_c = 38.5 }",
            "settings = { crystal_temp_c = 38.5 }",
            "nodes.source.instruments.pairs.settings.crystal_temp_c",
            "",
        ),
    ],
)
def test_a_malformed_copy_names_the_field_and_the_file(
    tmp_path: Path, old: str, new: str, field: str, problem: str
) -> None:
    text = PROFILE.read_text()
    assert text.count(old) == 1, old
    bad = tmp_path / "bad_entanglement.toml"
    bad.write_text(text.replace(old, new))
    result = CliRunner().invoke(main, ["profile", "show", str(bad)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith(f"qhil: error: {bad}: {field}"), lines[0]
    assert problem in lines[0]


async def test_the_bench_opens_with_every_pump_off() -> None:
    async with open_bench("entanglement") as bench:
        for node, name in (("source", "pairs"), ("alice", "twoway_pairs"), ("bob", "twoway_pairs")):
            source = _spdc(bench, node, name)
            assert not await source.output(), (node, name)
            assert await source.pump_current_ma() == 0.0
            assert await source.crystal_temperature_c() == pytest.approx(
                _comp(f"{node}.{name}")["phase_match_temp_c"], abs=0.01
            )
        assert set(await bench.identities()) == {
            f"{n}.{i}" for n, i, _ in load_profile("entanglement").instruments()
        }


# -- photons -----------------------------------------------------------------------------------


def test_the_pair_state_is_ready_at_power_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pairs' polarization state (qutip, whose first import takes seconds) is computed
    when the world powers on, not at the first pair: computed then, on a bench without a
    quantum memory, it stalled the emulators' event loop and the first TDC1 acquisition after
    the pump went on came back empty."""
    world = World(load_world_config(WORLD, str(PROFILE)))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the pair state was computed while generating photons")

    monkeypatch.setattr(states, "spdc_pair_state", refuse)
    pairs = world.spdc("source.pairs")
    pairs.pump_current_ma = SOURCE_CURRENT_MA
    pairs.heater_temp_c = _comp("source.pairs")["phase_match_temp_c"]
    block = world.tagger("alice.tagger").read(0.01)
    assert block.timestamps_ps.size > 0.5 * 0.01 * 38_000  # ~38k/s with the pump at 40 mA


@pytest.fixture(scope="module")
def source_streams() -> Streams:
    """1 s of both nodes' streams with the source site's pump on, fibres compensated."""
    return asyncio.run(_acquire({("source", "pairs"): SOURCE_CURRENT_MA}, 1.0))


def _source_coincidences(streams: Streams) -> tuple[F64, F64]:
    # The delay is the same for every detector pair (no cable delays on this bench).
    delta = _expected_delta(streams, "source.pairs", "alice.det_h", "bob.det_h")
    assert all(
        _expected_delta(streams, "source.pairs", f"alice.det_{x}", f"bob.det_{y}")[0] == delta[0]
        for x in "hvda"
        for y in "hvda"
    )
    return _coincidences(streams, delta)


@pytest.mark.slow
def test_coincidences_between_the_nodes_match_the_profiles_prediction(
    source_streams: Streams,
) -> None:
    counts, residual = _source_coincidences(source_streams)
    singles_a, singles_b = _singles_hz(source_streams)
    true_hz = _predicted_matrix(
        "source.pairs", SOURCE_CURRENT_MA, ("alice", "source-alice"), ("bob", "source-bob")
    )
    accidental_hz = singles_a.sum() * singles_b.sum() * 2 * HALF_WINDOW_PS * 1e-12  # case 3
    expected = (true_hz.sum() + accidental_hz) * source_streams.duration_s
    measured = counts.sum()
    print(
        f"coincidences {measured:.0f}, expected {expected:.1f} ({accidental_hz:.1f}/s accidental)"
    )
    assert abs(measured - expected) < Z * math.sqrt(expected)
    # Pairs sit at the truth's delay: B - A scatters about it by the two 2 ns ticks.
    assert abs(residual.mean()) < Z * residual.std() / math.sqrt(residual.size)
    # Each node's singles: the pairs' photons and the fibre's background photons (both
    # unpolarized on their own, 1/4 to each output), plus dark counts.
    for node, singles, link, herald in (
        ("alice", singles_a, "source-alice", "heralding_efficiency_signal"),
        ("bob", singles_b, "source-bob", "heralding_efficiency_idler"),
    ):
        t_fibre = _link_transmission(link)
        t, eff, _ = _arm(node, link)
        rate = _pair_rate_hz("source.pairs", SOURCE_CURRENT_MA) * _comp("source.pairs")[herald]
        background = WORLD["links"][link]["background_rate_hz"] * t / t_fibre
        dark = sum(_comp(f"{node}.det_{x.lower()}")["dark_count_rate_hz"] for x in LABELS)
        expected_singles = (
            (rate * t + background) * eff.sum() / 4 + dark
        ) * source_streams.duration_s
        got = singles.sum() * source_streams.duration_s
        assert abs(got - expected_singles) < Z * math.sqrt(expected_singles), (node, got)


@pytest.mark.slow
def test_source_pairs_are_polarization_correlated_with_the_configured_visibility(
    source_streams: Streams,
) -> None:
    counts, _ = _source_coincidences(source_streams)
    same = counts[0, 0] + counts[1, 1] + counts[2, 2] + counts[3, 3]
    crossed = counts[0, 1] + counts[1, 0] + counts[2, 3] + counts[3, 2]
    n = same + crossed
    visibility = (same - crossed) / n
    p = same / n
    sigma = 2 * math.sqrt(p * (1 - p) / n)
    true_hz = _predicted_matrix(
        "source.pairs", SOURCE_CURRENT_MA, ("alice", "source-alice"), ("bob", "source-bob")
    )
    singles_a, singles_b = _singles_hz(source_streams)
    acc = np.outer(singles_a, singles_b) * 2 * HALF_WINDOW_PS * 1e-12
    exp = true_hz + acc
    e_same = np.trace(exp)
    e_crossed = exp[0, 1] + exp[1, 0] + exp[2, 3] + exp[3, 2]
    predicted = (e_same - e_crossed) / (e_same + e_crossed)
    print(f"visibility {visibility:.4f} +- {sigma:.4f}, predicted {predicted:.4f}")
    assert abs(visibility - predicted) < Z * sigma
    assert predicted > 0.95 * _comp("source.pairs")["visibility"]


@pytest.mark.slow
def test_the_two_way_sources_give_theta_plus_and_minus_the_fibre_delay() -> None:
    """Both nodes' own sources on (the source site's off): alice's pairs show at B - A =
    theta + d, bob's at theta - d, d the alice-bob fibre's delay crossed either way."""
    pumps = {
        ("alice", "twoway_pairs"): TWOWAY_CURRENT_MA,
        ("bob", "twoway_pairs"): TWOWAY_CURRENT_MA,
    }
    streams = asyncio.run(_acquire(pumps, 1.0))
    singles_a, singles_b = _singles_hz(streams)
    means = []
    for source, arm_a, arm_b in (
        ("alice.twoway_pairs", ("alice", None), ("bob", "alice-bob")),
        ("bob.twoway_pairs", ("alice", "alice-bob"), ("bob", None)),
    ):
        delta = _expected_delta(streams, source, "alice.det_h", "bob.det_h")
        counts, residual = _coincidences(streams, delta)
        true_hz = _predicted_matrix(source, TWOWAY_CURRENT_MA, arm_a, arm_b).sum()
        acc_hz = singles_a.sum() * singles_b.sum() * 2 * HALF_WINDOW_PS * 1e-12
        expected = (true_hz + acc_hz) * streams.duration_s
        print(f"{source}: {counts.sum():.0f} coincidences, expected {expected:.1f}")
        assert abs(counts.sum() - expected) < Z * math.sqrt(expected)
        assert abs(residual.mean()) < Z * residual.std() / math.sqrt(residual.size)
        means.append(float(np.mean(delta)))
    # The fibre's delay is the same both ways (counted on bob's clock): the two peaks are
    # symmetric about the stream offset, so their mean is the offset (Lee et al. 2019).
    offset = float(np.mean(streams.offset_at(streams.a[0])))
    fibre = WORLD["links"]["alice-bob"]["length_km"] * 4.9e6 * (1 + streams.drift_b)
    assert means[0] - offset == pytest.approx(fibre, abs=1.0)
    assert offset - means[1] == pytest.approx(fibre, abs=1.0)
