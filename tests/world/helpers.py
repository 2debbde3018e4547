"""Builders and small vectorised analysis helpers for the world's tests."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
from scipy import stats

from qhil.emulators.world import World, load_world_config

GYS = {"alpha": 0.21, "e_d": 0.033, "y0": 1.7e-6, "eta_bob": 0.045}


def per_db_for_error(e: float) -> float:
    """Source polarization extinction ratio giving a wrong-state probability ``e``."""
    return 10 * math.log10((1 - e) / e)


def bb84_profile(
    *,
    mu: float | list[float] = 0.5,
    length_km: float = 10.0,
    alpha: float = 0.2,
    eta: float | list[float] = 0.1,
    dark_hz: float | list[float] = 0.0,
    dead_time_ns: float = 0.0,
    jitter_ps: float = 20.0,
    afterpulse: float = 0.0,
    e_d: float | None = None,
    rep_rate_hz: float = 80e6,
    pbs_er_db: float = 100.0,
    pattern_length: int = 1 << 16,
    intensity_probabilities: list[float] | None = None,
    drift: float = 0.0,
    initial_polarization: str = "identity",
    eve_fraction: float = 0.0,
    bob_offset_s: float = 0.0,
    bob_drift_ppm: float = 0.0,
    background_hz: float = 0.0,
) -> dict[str, Any]:
    """A [world] table: Alice WCS -> attenuator -> fibre -> Bob PC -> passive BB84 receiver."""
    mus = mu if isinstance(mu, list) else [mu]
    etas = eta if isinstance(eta, list) else [eta] * 4
    darks = dark_hz if isinstance(dark_hz, list) else [dark_hz] * 4
    tx: dict[str, Any] = {
        "type": "weak_coherent_transmitter",
        "rep_rate_hz": rep_rate_hz,
        "mus": mus,
        "random_pattern_length": pattern_length,
        "path": ["alice.att", "ab", "bob.pc", "bob.rx"],
        "polarization_extinction_ratio_db": 200.0 if e_d is None else per_db_for_error(e_d),
    }
    if intensity_probabilities is not None:
        tx["intensity_probabilities"] = intensity_probabilities
    bob: dict[str, Any] = {
        "pc": {"type": "polarization_controller"},
        "rx": {
            "type": "polarization_analyzer",
            "pbs_extinction_ratio_db": pbs_er_db,
            "bases": [
                {"axis": "HV", "weight": 0.5, "plus": "h", "minus": "v"},
                {"axis": "DA", "weight": 0.5, "plus": "d", "minus": "a"},
            ],
        },
        "tagger": {"type": "time_tagger", "n_channels": 4, "buffer_size": 1 << 26},
    }
    for i, name in enumerate("hvda"):
        bob[name] = {
            "type": "detector",
            "efficiency": etas[i],
            "dark_count_rate_hz": darks[i],
            "dead_time_ns": dead_time_ns,
            "jitter_ps": jitter_ps,
            "afterpulse_probability": afterpulse,
            "tagger": "tagger",
            "channel": i + 1,
        }
    return {
        "seed": 1,
        "nodes": {
            "alice": {"components": {"tx": tx, "att": {"type": "attenuator"}}},
            "bob": {
                "clock_offset_s": bob_offset_s,
                "clock_drift_ppm": bob_drift_ppm,
                "components": bob,
            },
        },
        "links": {
            "ab": {
                "a": "alice",
                "b": "bob",
                "length_km": length_km,
                "alpha_db_per_km": alpha,
                "polarization_drift_rad_per_sqrt_s": drift,
                "initial_polarization": initial_polarization,
                "eavesdropper": {"fraction": eve_fraction},
                "background_rate_hz": background_hz,
            }
        },
    }


def make_world(table: dict[str, Any], seed: int = 1, **kw: Any) -> World:
    return World(load_world_config(copy.deepcopy(table), "test"), seed=seed, **kw)


def bb84_events(world: World, block: Any) -> dict[str, np.ndarray]:
    """Per detected pulse: pulse index, Alice's symbol, Bob's basis and bit (random choice
    among clicked detectors, as a squashing map), and the number of detectors that clicked."""
    k = world.truth.pulse_indices("alice.tx", "bob.tagger", block)
    ch = block.channels
    sel = k >= 0
    k, ch = k[sel], ch[sel]
    order = np.lexsort((ch, k))
    k, ch = k[order], ch[order]
    # One (pulse, channel) pair counts once (a detector clicks at most once per pulse here).
    first = np.ones(k.size, bool)
    first[1:] = (k[1:] != k[:-1]) | (ch[1:] != ch[:-1])
    k, ch = k[first], ch[first]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    n_clicked = np.diff(np.r_[starts, k.size])
    rng = np.random.default_rng(12345)
    pick = starts + (rng.random(starts.size) * n_clicked).astype(np.int64)
    pulses = k[starts]
    chosen = ch[pick] - 1  # 0 H, 1 V, 2 D, 3 A
    pattern = world.transmitter("alice.tx").pattern
    sym = pattern[pulses % pattern.size]
    return {
        "pulse": pulses,
        "symbol": sym,
        "bob_basis": chosen // 2,
        "bob_bit": chosen % 2,
        "n_clicked": n_clicked,
    }


def pulse_count_by_intensity(world: World, k0: int, k1: int, n_mu: int) -> np.ndarray:
    """How many pulses with index in [k0, k1) carried each intensity index."""
    pattern = world.transmitter("alice.tx").pattern
    p = pattern.size
    per_period = np.bincount(pattern >> 2, minlength=n_mu).astype(np.int64)
    full = (k1 - k0) // p
    counts = per_period * full
    idx = (np.arange(k0 + full * p, k1) % p).astype(np.int64)
    counts += np.bincount(pattern[idx] >> 2, minlength=n_mu)
    return counts


def binomial_interval(n: int, p: float, confidence: float = 0.999) -> tuple[float, float]:
    """Two-sided interval for the count of a Binomial(n, p)."""
    lo, hi = stats.binom.interval(confidence, n, p)
    return float(lo), float(hi)


def z_of(observed: float, expected: float, sigma: float) -> float:
    return (observed - expected) / sigma


Z999 = float(stats.norm.isf(0.0005))  # two-sided 99.9 %


def single_detector_profile(
    *,
    mu: float = 0.1,
    length_km: float = 50.0,
    alpha: float = 0.2,
    eta: float = 0.8,
    dark_hz: float = 0.0,
    dead_time_ns: float = 0.0,
    jitter_ps: float = 20.0,
    afterpulse: float = 0.0,
    afterpulse_ns: float = 100.0,
    rep_rate_hz: float = 80e6,
    detector: dict[str, Any] | None = None,
    tagger: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Alice WCS -> fibre -> one detector at Bob (no polarization optics)."""
    det: dict[str, Any] = {
        "type": "detector",
        "efficiency": eta,
        "dark_count_rate_hz": dark_hz,
        "dead_time_ns": dead_time_ns,
        "jitter_ps": jitter_ps,
        "afterpulse_probability": afterpulse,
        "afterpulse_time_constant_ns": afterpulse_ns,
        "tagger": "tagger",
        "channel": 1,
    }
    det.update(detector or {})
    tg: dict[str, Any] = {"type": "time_tagger", "n_channels": 2, "buffer_size": 1 << 26}
    tg.update(tagger or {})
    return {
        "seed": 3,
        "nodes": {
            "alice": {
                "components": {
                    "tx": {
                        "type": "weak_coherent_transmitter",
                        "rep_rate_hz": rep_rate_hz,
                        "mus": [mu],
                        "path": ["ab", "bob.det"],
                    }
                }
            },
            "bob": {"components": {"det": det, "tagger": tg}},
        },
        "links": {
            "ab": {"a": "alice", "b": "bob", "length_km": length_km, "alpha_db_per_km": alpha}
        },
    }


def clicked_pulses(world: World, block: Any) -> np.ndarray:
    """Distinct pulse indices with at least one tag."""
    k = world.truth.pulse_indices("alice.tx", "bob.tagger", block)
    return np.unique(k[k >= 0])


def pulse_window(world: World, block: Any, detector: str = "bob.h") -> tuple[int, int]:
    """Indices [k0, k1) of the pulses whose (jitter-free) arrival falls in ``block``'s window.

    Assumes Alice's and Bob's clocks agree (no offset, no drift)."""
    tx = world.transmitter("alice.tx")
    period = float(tx.period_ps)
    delay = world.truth.expected_timestamp_ps("alice.tx", detector, 0.0)
    k0 = math.ceil((block.t_start_ps - delay) / period)
    k1 = math.ceil((block.t_stop_ps - delay) / period)
    return k0, k1


def gllp_gain_qber(
    mu: float, length_km: float, *, alpha: float, eta_bob: float, y0: float, e_d: float
) -> tuple[float, float]:
    """PHYSICS.md case 4: Q_mu = Y0 + 1 - exp(-eta mu); E_mu Q_mu = Y0/2 + e_d (1 - exp(-eta mu))."""
    eta = eta_bob * 10 ** (-alpha * length_km / 10)
    q = y0 + 1 - math.exp(-eta * mu)
    e = (y0 / 2 + e_d * (1 - math.exp(-eta * mu))) / q
    return q, e


def spdc_profile(
    *,
    emission: str = "cw",
    rep_rate_hz: float | None = None,
    modes: float = 1.0,
    pairs_per_s: float = 2e6,
    herald: float = 0.3,
    eta: float = 0.5,
    jitter_ps: tuple[float, float] = (80.0, 80.0),
    pair_jitter_ps: float = 0.0,
    dead_time_ns: float = 0.0,
    dark_hz: float = 0.0,
    visibility: float = 0.98,
    analyzers: bool = False,
    length_km: float | None = None,
    bob_offset_s: float = 0.0,
    bob_drift_ppm: float = 0.0,
    initial_polarization: str = "identity",
) -> dict[str, Any]:
    """SPDC at Alice. Signal -> Alice's detector(s); idler -> Bob's (over a fibre if
    ``length_km`` is given, else to a second detector at Alice on the same tagger)."""
    remote = length_km is not None
    far = "bob" if remote else "alice"

    def det(tagger: str, channel: int, jitter: float) -> dict[str, Any]:
        return {
            "type": "detector",
            "efficiency": eta,
            "dark_count_rate_hz": dark_hz,
            "dead_time_ns": dead_time_ns,
            "jitter_ps": jitter,
            "tagger": tagger,
            "channel": channel,
        }

    alice: dict[str, Any] = {
        "tagger": {"type": "time_tagger", "n_channels": 8, "buffer_size": 1 << 26}
    }
    bob: dict[str, Any] = {
        "tagger": {"type": "time_tagger", "n_channels": 8, "buffer_size": 1 << 26}
    }
    near_c, far_c = alice, (bob if remote else alice)
    far_base = 1 if remote else 5
    if analyzers:
        for comps, base, tag_jit, label in (
            (near_c, 1, jitter_ps[0], "a"),
            (far_c, far_base, jitter_ps[1], "b"),
        ):
            names = [f"{label}{x}" for x in "hvda"]
            for i, n in enumerate(names):
                comps[n] = det("tagger", base + i, tag_jit)
            comps[f"rx_{label}"] = {
                "type": "polarization_analyzer",
                "bases": [
                    {"axis": "HV", "plus": names[0], "minus": names[1]},
                    {"axis": "DA", "plus": names[2], "minus": names[3]},
                ],
            }
        sig_term, idl_term = "alice.rx_a", f"{far}.rx_b"
    else:
        near_c["da"] = det("tagger", 1, jitter_ps[0])
        far_c["db"] = det("tagger", far_base, jitter_ps[1])
        sig_term, idl_term = "alice.da", f"{far}.db"
    if remote:
        bob["pc"] = {"type": "polarization_controller"}
    src: dict[str, Any] = {
        "type": "spdc_source",
        "emission": emission,
        "modes": modes,
        "pump_current_ma": 40.0,
        "threshold_current_ma": 20.0,
        "slope_mw_per_ma": 1.0,
        "pairs_per_s_per_mw": pairs_per_s / 20.0,
        "visibility": visibility,
        "heralding_efficiency_signal": herald,
        "heralding_efficiency_idler": herald,
        "pair_jitter_ps": pair_jitter_ps,
        "signal_path": [sig_term],
        "idler_path": (["ab", "bob.pc", idl_term] if remote else [idl_term]),
    }
    if rep_rate_hz is not None:
        src["rep_rate_hz"] = rep_rate_hz
    alice["spdc"] = src
    table: dict[str, Any] = {"seed": 2, "nodes": {"alice": {"components": alice}}}
    if remote:
        table["nodes"]["bob"] = {
            "clock_offset_s": bob_offset_s,
            "clock_drift_ppm": bob_drift_ppm,
            "components": bob,
        }
        table["links"] = {
            "ab": {
                "a": "alice",
                "b": "bob",
                "length_km": length_km,
                "initial_polarization": initial_polarization,
            }
        }
    return table


def count_coincidences(
    a: np.ndarray, b: np.ndarray, delta: float | np.ndarray, width: float
) -> int:
    """Pairs (a_i, b_j) with b_j - a_i in [delta - width/2, delta + width/2)."""
    lo = np.searchsorted(b, a + delta - width / 2, side="left")
    hi = np.searchsorted(b, a + delta + width / 2, side="left")
    return int((hi - lo).sum())


def coincidence_deltas(
    a: np.ndarray, b: np.ndarray, delta: float | np.ndarray, width: float
) -> np.ndarray:
    """b - a - delta for the nearest b of each a, where it lies within +-width/2."""
    target = a + delta
    j = np.clip(np.searchsorted(b, target), 1, b.size - 1)
    near = np.where(np.abs(b[j] - target) < np.abs(b[j - 1] - target), b[j], b[j - 1])
    d = near - target
    return d[np.abs(d) < width / 2]
