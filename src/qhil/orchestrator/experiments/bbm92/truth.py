"""The Ma-Fung-Lo prediction for an emulated bench, from the world's truth (job only).

The experiment never sees this: the job that started the emulators adds it to the record,
as the entanglement jobs add the world's visibility. Every number is the world's own:
the source's pair rate (now, pump on), its heralding efficiency into each arm, each
path's transmission (fibre, controller, plate, analyser), the detectors' efficiencies and
dark counts, the fibres' background light, the source's visibility and the analysers' PBS
extinction. Dead time and multi-pair terms beyond MFL's are not modelled (at ~4e4 clicks/s
and 40 ns the dead time takes ~0.2 %).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qhil.numerics.qkd.bbm92 import predict_cw
from qhil.orchestrator.experiments.bbm92.settings import BBM92Settings


def _arm(world: dict[str, Any], src: dict[str, Any], node: str) -> tuple[str, str]:
    """(``signal``/``idler``, its first link) of the source's arm that ends at ``node``."""
    for arm in ("signal", "idler"):
        path = list(src.get(f"{arm}_path", []))
        if any(str(e).startswith(f"{node}.") for e in path):
            links = [e for e in path if e in world.get("links", {})]
            return arm, links[0] if links else ""
    raise LookupError(f"no arm of the pair source reaches {node}")


def predict_from_world(
    truth: Any, prof: Any, settings: BBM92Settings, window_ps: float
) -> dict[str, float]:
    """``predicted_*`` results: coincidence, accidental and sifted rates, QBER."""
    world: dict[str, Any] = prof.world
    s = settings
    name = s.source or next(
        n for n, spec in prof.nodes[s.source_node].instruments.items() if "spdc" in spec.model
    )
    comp = str(prof.nodes[s.source_node].instruments[name].component)
    src_cfg = world["nodes"][s.source_node]["components"][comp.split(".", 1)[1]]
    rate = float(truth.pair_rate_hz(comp))
    eta: dict[str, float] = {}
    noise: dict[str, float] = {}
    contrast = 1.0
    for node in (s.alice_node, s.bob_node):
        arm, link = _arm(world, src_cfg, node)
        comps = world["nodes"][node]["components"]
        dets = [f"{node}.{n}" for n, c in comps.items() if c.get("type") == "detector"]
        eff = np.array([truth.detector_efficiency(d) for d in dets])
        trans = np.array([truth.path_transmission(comp, d) for d in dets])
        herald = float(src_cfg.get(f"heralding_efficiency_{arm}", 1.0))
        eta[node] = herald * float(np.mean(trans * eff))
        after_link = trans / truth.link_transmission(link) if link else trans
        bg = float(world["links"][link].get("background_rate_hz", 0.0)) if link else 0.0
        noise[node] = sum(truth.dark_count_rate_hz(d) for d in dets) + bg * float(
            np.mean(after_link * eff)
        )
        for c in comps.values():
            if c.get("type") == "polarization_analyzer":
                er = 10 ** (float(c.get("pbs_extinction_ratio_db", 30.0)) / 10)
                contrast *= (er - 1) / (er + 1)
    e_d = 0.5 * (1 - float(src_cfg.get("visibility", 1.0)) * contrast)
    p = predict_cw(
        rate,
        eta[s.alice_node],
        eta[s.bob_node],
        noise[s.alice_node],
        noise[s.bob_node],
        e_d,
        window_ps * 1e-12,
    )
    return {
        "predicted_pair_rate_hz": rate,
        "predicted_eta_alice": eta[s.alice_node],
        "predicted_eta_bob": eta[s.bob_node],
        "predicted_coincidence_rate_hz": p.coincidence_rate_hz,
        "predicted_accidentals_hz": p.accidental_rate_hz,
        "predicted_sifted_rate_hz": p.sifted_rate_hz,
        "predicted_qber": p.qber,
        "predicted_e_d": e_d,
    }
