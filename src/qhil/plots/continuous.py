"""Continuous key generation (``bb84.continuous``, its parties' ``.alice`` / ``.bob``,
``bbm92.continuous``; issue 13): the keys over time.

From the record alone: each party's ``<party>/keys`` rows (one per key tried: committed
or dropped, its secret bits, test-basis QBER and, in newer records, ``t_s`` when it
ended), its ``<party>/pauses`` rows (the store full: generation paused) and the results
(``dropped_<reason>`` counts, ``paused_s``, ``key_rate_bps``). Older records without
``t_s`` are drawn against the key's index.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from qhil.plots.core import Arrays, PlotSpec, add_plot, field_or_none, note, parameter_number
from qhil.records import RunRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Which party's rows each kind's plot draws (one-process runs hold both: the same keys).
PARTY_OF_KIND = {
    "bb84.continuous": "bob",
    "bb84.continuous.bob": "bob",
    "bb84.continuous.alice": "alice",
    "bbm92.continuous": "bob",
}


def draw_keys(party: str, record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    rows = arrays[f"{party}/keys"]
    t = field_or_none(rows, "t_s")
    x = np.asarray(t if t is not None else rows["key"], dtype=float)
    xlabel = "time since key generation began (s)" if t is not None else "key"
    ok = rows["committed"] == 1
    bits = rows["secret_bits"].astype(float)
    cumulative = np.cumsum(np.where(ok, bits, 0.0))
    qber = 100 * rows["qber_test_signal"].astype(float)
    top, middle, bottom = fig.subplots(3, 1, sharex=True)

    start = 0.0 if t is not None else -1.0  # nothing before the first key
    top.step(
        np.r_[start, x], np.r_[0.0, cumulative], where="post", color="C0",
        label="secret bits (cumulative)",
    )  # fmt: skip
    top.plot(x[ok], cumulative[ok], "o", ms=3, color="C0", label="key committed")
    top.plot(x[~ok], cumulative[~ok], "x", color="C3", label="key dropped")
    top.set_ylabel("secret bits")
    top.set_title(f"{record.kind}: keys over time ({party}'s record)")
    top.legend(fontsize=8, loc="upper left")

    middle.bar(x[ok], bits[ok], width=_bar_width(x), color="C0", label="committed")
    middle.set_ylabel("key length (bits)")

    bottom.plot(x[ok], qber[ok], "o", color="C0", label="committed")
    bottom.plot(x[~ok], qber[~ok], "x", color="C3", label="dropped")
    limit = parameter_number(record, "max_qber")
    if limit is not None:
        bottom.axhline(100 * limit, color="k", ls=":", label="abort threshold")
    bottom.set_ylabel("test-basis QBER (%)")
    bottom.set_xlabel(xlabel)
    bottom.legend(fontsize=8, loc="upper left")

    # either party's gate may pause both (the other waits): every pause in the record
    pauses = [arrays[n] for n in ("alice/pauses", "bob/pauses") if n in arrays]
    if t is not None and any(len(p) > 0 for p in pauses):
        spans = np.concatenate(pauses)
        for i, (a, b) in enumerate(zip(spans["start_s"], spans["end_s"], strict=True)):
            for ax in (top, middle, bottom):
                label = "paused: key store full" if (i == 0 and ax is middle) else None
                ax.axvspan(float(a), float(b), color="0.85", zorder=0, label=label)
        middle.legend(fontsize=8, loc="upper left")
    note(top, _totals(record, int(ok.sum()), int((~ok).sum())))


def _bar_width(x: np.ndarray[Any, Any]) -> float:
    gaps = np.diff(np.sort(x))
    return 0.6 * float(np.median(gaps)) if gaps.size and np.median(gaps) > 0 else 0.6


def _totals(record: RunRecord, committed: int, dropped: int) -> str:
    lines = [f"keys committed {committed}, dropped {dropped}"]
    reasons = {
        k.removeprefix("dropped_"): v
        for k, v in record.results.items()
        if k.startswith("dropped_") and isinstance(v, int)
    }
    if reasons:
        lines.append("dropped: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
    rate, paused = record.results.get("key_rate_bps"), record.results.get("paused_s")
    if isinstance(rate, int | float):
        lines.append(f"key rate {rate:.1f} bit/s of acquisition")
    if isinstance(paused, int | float) and paused > 0:
        lines.append(f"paused {paused:.1f} s (key store full)")
    return "\n".join(lines)


for _kind, _party in PARTY_OF_KIND.items():
    add_plot(
        PlotSpec(
            "keys",
            (_kind,),
            (f"{_party}/keys",),
            "per key over time: cumulative secret bits, key length, test-basis QBER; "
            "dropped keys and pauses (key store full)",
            partial(draw_keys, _party),
            ("alice/pauses", "bob/pauses"),
            (10.0, 9.0),
        )
    )
