"""BB84 runs (``bb84``, and the parties' ``bb84.alice`` / ``bb84.bob``): per block.

Bob's ``bob/block`` rows give the test-basis QBER, the sifted bits, his detectors' rates
and the alignment; Alice's ``alice/block`` rows the unrevealed pulses and test errors per
intensity; ``mucal_*`` her measured mean photon numbers before the exchange; with drift
tracking, ``bob/tracking`` and ``bob/recompensation`` (the ``tracking`` plot).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from qhil.plots.core import (
    DETECTORS,
    Arrays,
    binomial_band,
    empty,
    expected_range,
    note,
    parameter_number,
    plot,
    result_number,
)
from qhil.plots.mean_photon_number import draw_levels
from qhil.records import RunRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INTENSITIES = ("signal", "decoy", "vacuum")


def block_duration_s(record: RunRecord) -> float | None:
    """One pattern period (BB84Settings.block_duration_s), from the run's parameters."""
    length = parameter_number(record, "pattern_length")
    rate = parameter_number(record, "rep_rate_hz")
    return length / rate if length and rate else None


@plot(
    "blocks",
    kinds=("bb84", "bb84.bob"),
    needs=("bob/block",),
    about="per block: test-basis QBER with its binomial band, sifted bits, detector rates, "
    "alignment",
    size_in=(12.0, 9.0),
)
def draw_blocks(record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    rows = arrays["bob/block"]
    b = rows["block"]
    used = rows["used"] == 1
    axes = fig.subplots(2, 2, sharex=True)
    _qber(record, rows, used, axes[0, 0])

    ax = axes[0, 1]
    ax.plot(b, rows["detections"].clip(min=0), ".-", label="detections in window")
    ax.plot(b, rows["key_sifted"].clip(min=0), ".-", label="sifted, key basis")
    ax.plot(b, rows["test_sifted"].clip(min=0), ".-", label="sifted, test basis")
    _mark_discarded(ax, b, used)
    ax.set_ylabel("bits per block")
    ax.legend(fontsize=8, loc="lower left")
    totals = [
        f"{name} {value:.6g}"
        for name in ("sifted_bits", "secret_bits", "key_rate_bps")
        if (value := result_number(record, name)) is not None
    ]
    if totals:
        note(ax, "\n".join(totals))

    ax = axes[1, 0]
    period = block_duration_s(record)
    scale, unit = (1.0 / period, "tags / s") if period else (1.0, "tags per block")
    for d in DETECTORS:
        ax.plot(b, rows[f"tags_{d.lower()}"] * scale, ".-", label=d)
    ax.set_ylabel(f"detector rate ({unit})")
    ax.set_xlabel("block")
    ax.legend(fontsize=8, ncol=4, loc="lower left")

    ax = axes[1, 1]
    ax.plot(b[used], rows["drift_ppm"][used], ".-", color="C0")
    ax.set_ylabel("clock drift found (ppm)", color="C0")
    ax.set_xlabel("block")
    twin = ax.twinx()
    twin.plot(b, rows["significance"], "x", color="C3", markersize=4)
    twin.set_ylabel("alignment significance (sigma)", color="C3")
    threshold = parameter_number(record, "min_alignment_significance")
    if threshold is not None:
        twin.axhline(threshold, color="C3", linestyle=":", linewidth=1)


def _qber(record: RunRecord, rows: Any, used: Any, ax: Any) -> None:
    """Each block's QBER with its 68 % interval, and the 95 % band a block of its size
    would show if every block had the run's pooled error rate."""
    b = rows["block"][used]
    k = rows["test_errors"][used].astype(float)
    n = rows["test_sifted"][used].astype(float)
    if not (n > 0).any():
        empty(ax, "no block was used (all discarded)")
        return
    q = np.where(n > 0, k / np.where(n > 0, n, 1), np.nan)
    lo, hi = binomial_band(k, n)
    ax.errorbar(
        b,
        q * 100,
        yerr=(np.clip(q - lo, 0, None) * 100, np.clip(hi - q, 0, None) * 100),
        fmt="o",
        markersize=3,
        label="block (68 %)",
    )
    pooled = k.sum() / n.sum()
    band_lo, band_hi = expected_range(pooled, n)
    ax.fill_between(
        b,
        band_lo * 100,
        band_hi * 100,
        step="mid",
        alpha=0.2,
        color="C0",
        label=f"pooled {100 * pooled:.2f} % (95 % band)",
    )
    ax.axhline(pooled * 100, color="C0", linewidth=0.8)
    limit = parameter_number(record, "max_qber")
    top = 1.5 * float(np.nanmax(np.concatenate((hi, band_hi)))) * 100
    if limit is not None and limit * 100 <= top:
        ax.axhline(limit * 100, color="C3", linestyle="--", linewidth=1, label="abort above")
    elif limit is not None:  # far above the data: say it rather than squash the blocks
        note(ax, f"abort above {100 * limit:.3g} %")
    ax.set_ylim(0, top)
    ax.set_ylabel("QBER, test basis (%)")
    ax.legend(fontsize=8, loc="upper left")


def _mark_discarded(ax: Any, blocks: Any, used: Any) -> None:
    if (~used).any():
        ax.plot(blocks[~used], np.zeros(int((~used).sum())), "x", color="C3", label="discarded")


@plot(
    "intensities",
    kinds=("bb84", "bb84.alice"),
    needs=("alice/block",),
    about="per block: Alice's unrevealed pulses and test-basis errors per intensity",
    size_in=(10.0, 7.0),
)
def draw_intensities(record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    rows = arrays["alice/block"]
    b = rows["block"]
    used = rows["used"] == 1
    top, bottom = fig.subplots(2, 1, sharex=True)
    for name in INTENSITIES:
        top.plot(b[used], rows[f"pulses_{name}"][used], ".-", label=name)
        bottom.plot(b[used], rows[f"test_errors_{name}"][used], ".-", label=name)
    _mark_discarded(top, b, used)
    top.set_ylabel("unrevealed pulses in window")
    if used.any():
        top.set_yscale("log")
    top.legend(fontsize=8)
    bottom.set_ylabel("test-basis errors")
    bottom.set_xlabel("block")
    gains = [
        f"gain {name} {value:.3g}"
        for name in INTENSITIES
        if (value := result_number(record, f"gain_{name}")) is not None
    ]
    if gains:
        note(top, "\n".join(gains))


@plot(
    "gain",
    kinds=("bb84",),
    needs=("alice/block", "bob/block"),
    about="per block: overall gain (detections per unrevealed pulse) with the pooled 95 % "
    "band, and secret bits per block at the run's secret fraction",
    size_in=(10.0, 7.0),
)
def draw_gain(record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    alice, bob = arrays["alice/block"], arrays["bob/block"]
    # The same blocks on both sides (a run stopped mid-block may have one more row).
    common, ia, ib = np.intersect1d(alice["block"], bob["block"], return_indices=True)
    used = (alice["used"][ia] == 1) & (bob["used"][ib] == 1)
    pulses = np.sum([alice[f"pulses_{n}"][ia] for n in INTENSITIES], axis=0, dtype=float)[used]
    clicks = bob["detections"][ib].astype(float)[used]
    b = common[used]
    top, bottom = fig.subplots(2, 1, sharex=True)
    if not (pulses > 0).any():
        empty(top, "no block was used (all discarded)")
        empty(bottom, "")
        return
    ok = pulses > 0
    gain = np.where(ok, clicks / np.where(ok, pulses, 1), np.nan)
    pooled = clicks.sum() / pulses.sum()
    lo, hi = expected_range(pooled, pulses)
    top.fill_between(
        b, lo, hi, step="mid", alpha=0.2, color="C0", label=f"pooled {pooled:.4g} (95 % band)"
    )
    top.plot(b, gain, "o", markersize=3, color="C0", label="block")
    top.set_ylabel("gain (detections per pulse)")
    top.legend(fontsize=8)
    sifted = bob["key_sifted"][ib][used].astype(float)
    total_sifted = result_number(record, "sifted_bits")
    secret = result_number(record, "secret_bits")
    bottom.plot(b, sifted, ".-", label="sifted key bits")
    if secret is not None and total_sifted:
        fraction = secret / total_sifted
        bottom.plot(b, sifted * fraction, ".-", label=f"x the run's secret fraction {fraction:.3f}")
    bottom.set_ylabel("bits per block")
    bottom.set_xlabel("block")
    bottom.legend(fontsize=8)


@plot(
    "tracking",
    kinds=("bb84", "bb84.bob"),
    needs=("bob/tracking",),
    optional=("bob/recompensation",),
    about="drift tracking per block: the revealed subset's QBER per basis against the "
    "expected level, the blocks that triggered a re-compensation and the QBER after it",
    size_in=(10.0, 5.0),
)
def draw_tracking(record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    rows = arrays["bob/tracking"]
    ax = fig.subplots(1, 1)
    b = rows["block"]
    for i, basis in enumerate(("z", "x")):
        n = rows[f"revealed_{basis}"].astype(float)
        q = np.where(n > 0, rows[f"errors_{basis}"] / np.where(n > 0, n, 1), np.nan)
        ax.plot(
            b, q * 100, "o", markersize=3, color=f"C{i}", label=f"revealed QBER {basis.upper()}"
        )
        ax.step(
            b,
            rows[f"expected_{basis}"] * 100,
            where="mid",
            color=f"C{i}",
            linewidth=1,
            label=f"expected {basis.upper()} (upper bound)",
        )
    hit = rows["triggered"] == 1
    for k, block in enumerate(b[hit]):
        ax.axvline(
            block, color="C3", linestyle=":", linewidth=1, label="triggered" if k == 0 else None
        )
    events = arrays.get("bob/recompensation")
    if events is not None and events.size:
        ok = events["ok"] == 1
        after = events["block"][ok] + 0.5  # it ran after the triggering block
        for i, basis in enumerate(("z", "x")):
            ax.plot(
                after,
                events[f"e_{basis}_after"][ok] * 100,
                "D",
                markersize=5,
                color=f"C{i}",
                markeredgecolor="k",
                label=f"e_{basis.upper()} after re-compensation",
            )
        if (~ok).any():
            note(ax, f"{int((~ok).sum())} re-compensation(s) failed")
    ax.set_xlabel("block")
    ax.set_ylabel("error rate (%)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper left")


plot(
    "mean_photon_numbers",
    kinds=("bb84", "bb84.alice"),
    needs=("mucal_readings",),
    optional=("mucal_mus", "mucal_mus_std"),
    about="Alice's mean photon numbers measured before the exchange, against the configured mus",
)(partial(draw_levels, prefix="mucal_", configured="mus"))
