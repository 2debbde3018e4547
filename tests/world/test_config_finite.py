"""The world config itself refuses inf and NaN in physical parameters, naming the field.

A profile's loader already refuses non-finite numbers anywhere in the file; these tests
build the ``[world]`` table in Python, as a user's own code or a test would, so only the
world config's own validation stands between ``length_km = inf`` and the model.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from helpers import bb84_profile

from qhil.emulators.world import load_world_config
from qhil.emulators.world.config import QuantumMemoryConfig
from qhil.errors import ConfigError


def _with(path: str, value: Any) -> dict[str, Any]:
    table = copy.deepcopy(bb84_profile())
    *head, last = path.split(".")
    node = table
    for p in head:
        node = node[p] if not p.isdigit() else node[int(p)]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return table


NON_FINITE = [math.inf, -math.inf, math.nan]
FIELDS = [
    "links.ab.length_km",
    "links.ab.alpha_db_per_km",
    "links.ab.background_rate_hz",
    "links.ab.polarization_drift_rad_per_sqrt_s",
    "nodes.alice.components.tx.rep_rate_hz",
    "nodes.alice.components.tx.polarization_extinction_ratio_db",
    "nodes.alice.components.tx.mus.0",
    "nodes.bob.clock_offset_s",
    "nodes.bob.clock_drift_ppm",
    "nodes.bob.components.h.dark_count_rate_hz",
    "nodes.bob.components.h.dead_time_ns",
    "nodes.bob.components.h.jitter_ps",
    "nodes.bob.components.rx.pbs_extinction_ratio_db",
]


@pytest.mark.parametrize("value", NON_FINITE, ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize("path", FIELDS)
def test_non_finite_parameter_is_refused_naming_the_field(path: str, value: float) -> None:
    with pytest.raises(ConfigError) as info:
        load_world_config(_with(path, value), "w.toml")
    msg = str(info.value)
    field = path.removesuffix(".0") + ("[0]" if path.endswith(".0") else "")
    assert msg.startswith(f"w.toml: world.{field}: "), msg


def test_length_inf_says_finite() -> None:
    with pytest.raises(ConfigError, match=r"length_km: must be a finite number \(got inf\)"):
        load_world_config(_with("links.ab.length_km", math.inf), "w.toml")


def test_memory_time_constants_accept_never_but_not_nan() -> None:
    # +inf is the documented "no decay" / "no cutoff" of a memory; NaN is never meaningful.
    for name in ("t1_s", "t2_s", "cutoff_s", "efficiency_decay_time_s"):
        assert getattr(QuantumMemoryConfig(type="quantum_memory", **{name: math.inf}), name) == (
            math.inf
        )
        with pytest.raises(ValueError, match=name):
            QuantumMemoryConfig(type="quantum_memory", **{name: math.nan})
    with pytest.raises(ValueError, match="initial_fidelity"):
        QuantumMemoryConfig(type="quantum_memory", initial_fidelity=math.nan)
