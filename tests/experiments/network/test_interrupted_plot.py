"""A ping record stopped after its test decided (no verdict recorded): probes.png says
"interrupted" with the decision so far, not "not reachable"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qhil.orchestrator.experiments.network.ping import OUTCOME_DTYPE, PROBE_DTYPE
from qhil.orchestrator.experiments.network.settings import PingSettings
from qhil.records import RunStore


def _stopped_ping(data: Path, agree: float) -> str:
    probes = np.zeros(3, dtype=PROBE_DTYPE)
    probes["probe"] = np.arange(3)
    probes["delivered"] = probes["measured"] = 20
    probes["fidelity"] = 0.9
    outcomes = np.zeros(60, dtype=OUTCOME_DTYPE)
    outcomes["agree"] = (np.arange(60) % 10) < agree * 10  # spread evenly
    ping = PingSettings.model_validate({}).model_dump(mode="json")
    run = RunStore(data).start_run("ping", parameters={"ping": ping})
    with pytest.raises(KeyboardInterrupt), run:
        run.append("probes", probes)
        run.append("outcomes", outcomes)
        raise KeyboardInterrupt  # as a Ctrl-C after the third probe
    return run.run_id


@pytest.mark.parametrize(
    ("agree", "said"), [(1.0, "decided reachable after"), (0.5, "decided not reachable after")]
)
def test_stopped_ping_plot_says_interrupted_with_the_decision(
    tmp_path: Path, agree: float, said: str
) -> None:
    from matplotlib.figure import Figure

    from qhil.plots.network import draw_probes

    record = RunStore(tmp_path).get(_stopped_ping(tmp_path, agree))
    assert record.status == "aborted" and "reachable" not in record.results
    fig = Figure()
    arrays = {n: record.arrays[n] for n in ("probes", "outcomes")}
    draw_probes(record, arrays, fig)
    title = fig.axes[0].get_title()
    assert title.startswith("ping interrupted (aborted) after 3 probes") and said in title
