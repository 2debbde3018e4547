"""``bbm92`` runs (issue 10): the coincidences behind the key, and the QBER it paid.

Drawn from the record alone: the acquisition's 4 x 4 coincidence matrix
(``acquisition/matrix``, alice's H, V, D, A x bob's; raw, accidentals included) and the
results (``qber_test``, ``qber_key``, ``qber``, their bit counts, ``predicted_qber`` when the
bench was emulated, ``secret_bits``, ``finite_key_mu``).
"""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from qhil.plots.core import Arrays, PlotSpec, add_plot, empty, note, plot, result_number
from qhil.records import RunRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_LABELS = ("H", "V", "D", "A")


@plot(
    "bbm92",
    kinds=("bbm92",),
    needs=("acquisition/matrix",),
    optional=("acquisition/accidentals",),
    about="coincidence matrix (alice x bob outcomes) and the QBER of each basis vs prediction",
    size_in=(11.0, 5.0),
)
def draw_bbm92(record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    left, right = fig.subplots(1, 2)
    m = np.asarray(arrays["acquisition/matrix"], dtype=float).reshape(-1, 4, 4).sum(axis=0)
    im = left.imshow(m, cmap="viridis")
    for i in range(4):
        for j in range(4):
            left.text(j, i, f"{int(m[i, j])}", ha="center", va="center", color="w", fontsize=8)
    left.set_xticks(range(4), [f"bob {x}" for x in _LABELS])
    left.set_yticks(range(4), [f"alice {x}" for x in _LABELS])
    left.set_title("coincidences (raw)")
    fig.colorbar(im, ax=left, shrink=0.8)
    if "acquisition/accidentals" in arrays:
        acc = float(np.asarray(arrays["acquisition/accidentals"], dtype=float).sum())
        note(left, f"accidentals {acc:.1f} (displaced windows)")
    draw_qber(record, right)


def draw_party(party: str, record: RunRecord, arrays: Arrays, fig: Figure) -> None:
    """A party's record: its node's outcomes over the coincidences, and the QBER."""
    left, right = fig.subplots(1, 2)
    counts = np.asarray(arrays[f"{party}/outcomes"], dtype=float).reshape(-1, 4).sum(axis=0)
    left.bar(range(4), counts, color="C0")
    left.set_xticks(range(4), list(_LABELS))
    left.set_ylabel("coincidences")
    left.set_title(f"{party}'s outcomes (squashed)")
    draw_qber(record, right)


for _party in ("alice", "bob"):
    add_plot(
        PlotSpec(
            "qber",
            (f"bbm92.{_party}",),
            (f"{_party}/outcomes",),
            "the node's outcomes and the QBER of each basis (a party's record)",
            partial(draw_party, _party),
            size_in=(11.0, 5.0),
        )
    )


def draw_qber(record: RunRecord, right: Any) -> None:
    """Each basis' QBER (1 sigma), the prediction and the threshold, from the results."""
    bars = [
        ("test D/A", "qber_test", "test_basis_bits"),
        ("key H/V", "qber_key", "key_basis_bits"),
        ("both", "qber", "sifted_bits"),
    ]
    shown: list[tuple[str, float, float]] = []
    for lab, q_name, n_name in bars:
        qv, nv = result_number(record, q_name), result_number(record, n_name)
        if qv is not None and nv:
            shown.append((lab, qv, nv))
    if not shown:
        empty(right, "no QBER measured (the run stopped before sifting)")
        return
    x = np.arange(len(shown))
    q = np.array([100 * qv for _, qv, _ in shown])
    err = np.array([100 * math.sqrt(max(qv * (1 - qv), 1e-12) / nv) for _, qv, nv in shown])
    right.bar(x, q, yerr=err, capsize=4, color="C0", label="measured (1 sigma)")
    pred = result_number(record, "predicted_qber")
    if pred is not None:
        right.axhline(100 * pred, color="C3", ls="--", label="Ma-Fung-Lo prediction")
    limit = record.parameters.get("max_qber")
    if isinstance(limit, int | float):
        right.axhline(100 * float(limit), color="k", ls=":", label="abort threshold")
    right.set_xticks(x, [s[0] for s in shown])
    right.set_ylabel("QBER (%)")
    right.set_title("QBER")
    right.legend(fontsize=8, loc="upper left")
    bits = result_number(record, "secret_bits") or 0
    mu = result_number(record, "finite_key_mu")
    text = f"secret bits {int(bits)}" + ("" if mu is None else f"\nfinite-key mu {mu:.4f}")
    note(right, text)
