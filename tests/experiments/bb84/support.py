"""Test doubles for the BB84 experiment: the two roles driving a real emulated World
directly, an opened in-process authenticated channel pair, and world tables."""

from __future__ import annotations

import asyncio
import copy
import json
import math
import struct
from typing import Any

import numpy as np

from qhil.drivers.roles import TagBlock
from qhil.emulators.world import World, load_world_config
from qhil.orchestrator.channel import (
    AuthenticatedChannel,
    AuthKey,
    HmacSha256Authenticator,
    Tamper,
    in_process_channels,
)
from qhil.orchestrator.experiments.bb84 import BB84Settings

CHANNEL_MAP = {"H": 1, "V": 2, "D": 3, "A": 4}


def frame_kind(frame: bytes) -> str:
    """The message kind in a channel frame's (cleartext, authenticated) JSON header,
    e.g. ``bb84.KeyConfirm`` or the channel's own hello: for picking a message to fault."""
    (header_len,) = struct.unpack_from(">I", frame, 12)  # after magic and seq
    return str(json.loads(frame[24 : 24 + header_len])["kind"])


TEST_KEY = AuthKey(bytes.fromhex("b884" * 16))


class WorldPatternGenerator:
    """PatternGenerator role: uploads straight into the world's transmitter (test double)."""

    def __init__(self, world: World, transmitter: str = "alice.tx") -> None:
        self.name = "alice.pattern_generator"
        self._tx = world.transmitter(transmitter)
        self.uploads: list[np.ndarray] = []

    async def connect(self) -> None:
        self._tx.enabled = False

    async def close(self) -> None:
        self._tx.enabled = False

    async def identity(self) -> str:
        return "qhil,WorldPatternGenerator,test-double,0"

    async def load_pattern(self, symbols: np.ndarray, symbol_rate_hz: float) -> None:
        self._tx.rep_rate_hz = symbol_rate_hz
        self._tx.set_pattern(symbols)
        self.uploads.append(np.asarray(symbols).copy())

    async def set_output(self, enabled: bool) -> None:
        self._tx.enabled = bool(enabled)


class WorldTagger:
    """TimeTagger role: reads the world's tagger (test double); keeps the world blocks.

    ``window_fraction`` < 1 records only that fraction of each requested duration (a
    tagger whose gate is coarser than the pattern period).
    """

    def __init__(
        self, world: World, tagger: str = "bob.tagger", window_fraction: float = 1.0
    ) -> None:
        self.name = "bob.tagger"
        self.window_fraction = window_fraction
        self._tagger = world.tagger(tagger)
        self._reader = self._tagger.open_reader()
        self.blocks: list[Any] = []

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        self._reader.close()

    async def identity(self) -> str:
        return "qhil,WorldTagger,test-double,0"

    async def acquire(self, duration_s: float) -> TagBlock:
        self._reader.seek_now()
        block = self._reader.read(duration_s * self.window_fraction)
        self.blocks.append(block)
        return TagBlock(
            np.asarray(block.timestamps_ps, dtype=np.int64),
            np.asarray(block.channels, dtype=np.int16),
            int(block.lost),
        )

    async def set_input_delay_ps(self, channel: int, delay_ps: int) -> None:
        self._tagger.set_input_delay(channel, delay_ps)

    async def singles(self, integration_s: float) -> list[int]:
        block = self._reader.read(integration_s)
        return [int(np.count_nonzero(block.channels == c)) for c in range(1, 5)]


async def open_channels(
    *, tamper_a_to_b: Tamper | None = None, tamper_b_to_a: Tamper | None = None
) -> tuple[AuthenticatedChannel, AuthenticatedChannel]:
    a, b = in_process_channels(
        HmacSha256Authenticator(TEST_KEY),
        HmacSha256Authenticator(TEST_KEY),
        tamper_a_to_b=tamper_a_to_b,
        tamper_b_to_a=tamper_b_to_a,
        timeout_s=60.0,
    )
    await asyncio.gather(a.open(), b.open())
    return a, b


def wrong_state_db(e: float) -> float:
    """Polarization extinction ratio (dB) that sends a fraction ``e`` into the wrong state."""
    return 10 * math.log10((1 - e) / e)


def bb84_world(*, seed: int = 1, **kw: Any) -> World:
    """A World from :func:`bb84_world_table`."""
    table = bb84_world_table(seed=seed, **kw)
    return World(load_world_config(copy.deepcopy(table), "bb84 test world"), seed=seed)


def bb84_world_table(
    *,
    mus: tuple[float, float, float] = (0.6, 0.2, 0.0),
    probs: tuple[float, float, float] = (0.5, 0.3, 0.2),
    rep_rate_hz: float = 80e6,
    length_km: float = 0.0,
    alpha: float = 0.2,
    eta: float = 0.5,
    dark_hz: float = 0.0,
    e_d: float = 0.01,
    z_weight: float = 0.5,
    dead_time_ns: float = 0.0,
    afterpulse: float = 0.0,
    jitter_ps: float = 40.0,
    bob_offset_s: float = 0.0,
    bob_drift_ppm: float = 0.0,
    eve_fraction: float = 0.0,
    seed: int = 1,
) -> dict[str, Any]:
    """[world] table: Alice WCS -> fibre -> Bob's passive receiver (Z weight ``z_weight``)
    -> 4 detectors on tagger channels 1-4."""
    bob: dict[str, Any] = {
        "rx": {
            "type": "polarization_analyzer",
            "pbs_extinction_ratio_db": 100.0,
            "bases": [
                {"axis": "HV", "weight": z_weight, "plus": "h", "minus": "v"},
                {"axis": "DA", "weight": 1 - z_weight, "plus": "d", "minus": "a"},
            ],
        },
        "tagger": {"type": "time_tagger", "n_channels": 4, "buffer_size": 1 << 26},
    }
    for i, name in enumerate("hvda"):
        bob[name] = {
            "type": "detector",
            "efficiency": eta,
            "dark_count_rate_hz": dark_hz,
            "dead_time_ns": dead_time_ns,
            "jitter_ps": jitter_ps,
            "afterpulse_probability": afterpulse,
            "tagger": "tagger",
            "channel": i + 1,
        }
    table = {
        "seed": seed,
        "nodes": {
            "alice": {
                "components": {
                    "tx": {
                        "type": "weak_coherent_transmitter",
                        "rep_rate_hz": rep_rate_hz,
                        "mus": list(mus),
                        "intensity_probabilities": list(probs),
                        "polarization_extinction_ratio_db": wrong_state_db(e_d),
                        "path": ["ab", "bob.rx"],
                    }
                }
            },
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
                "initial_polarization": "identity",
                "polarization_drift_rad_per_sqrt_s": 0.0,
                "eavesdropper": {"fraction": eve_fraction},
            }
        },
    }
    return table


def settings(**overrides: Any) -> BB84Settings:
    data: dict[str, Any] = {
        "channel_map": CHANNEL_MAP,
        "rep_rate_hz": 80e6,
        "mus": [0.6, 0.2, 0.0],
        "intensity_probabilities": [0.5, 0.3, 0.2],
        "z_basis_probability": 0.5,
        "pattern_length": 1 << 20,
        "blocks": 4,
    }
    data.update(overrides)
    return BB84Settings.from_mapping(data, "test")
