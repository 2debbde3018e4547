"""Shared fixtures: a private key store and a runner over the world test doubles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qhil.emulators.world import World
from qhil.orchestrator.channel import Tamper
from qhil.orchestrator.experiments.bb84 import BB84Result, BB84Settings, run_bb84
from qhil.records import KeyStore

from .support import WorldPatternGenerator, WorldTagger, open_channels


class Runner:
    """``await run(world, settings, **kw)``: both parties over an in-process HMAC channel.

    Returns the result (or raises BB84Aborted); ``tamper_a_to_b`` / ``tamper_b_to_a``
    put a man-in-the-middle on the channel; ``window_fraction`` shortens the tagger's
    acquisitions; other keywords (``on_data``,
    ``progress``) go to ``run_bb84``. Alice's and Bob's randomness is seeded so a
    failing run can be replayed. The role doubles of the last run stay reachable.
    """

    def __init__(self, key_store: KeyStore) -> None:
        self.key_store = key_store
        self.tagger: WorldTagger | None = None
        self.generator: WorldPatternGenerator | None = None

    async def __call__(
        self,
        world: World,
        settings: BB84Settings,
        *,
        tamper_a_to_b: Tamper | None = None,
        tamper_b_to_a: Tamper | None = None,
        seed: int = 1,
        window_fraction: float = 1.0,
        **kw: Any,
    ) -> BB84Result:
        a, b = await open_channels(tamper_a_to_b=tamper_a_to_b, tamper_b_to_a=tamper_b_to_a)
        self.generator = WorldPatternGenerator(world)
        self.tagger = WorldTagger(world, window_fraction=window_fraction)
        try:
            return await run_bb84(
                settings,
                self.generator,
                self.tagger,
                a,
                b,
                key_store=self.key_store,
                alice_rng=np.random.default_rng([seed, 1]),
                bob_rng=np.random.default_rng([seed, 2]),
                **kw,
            )
        finally:
            await a.close()
            await b.close()


@pytest.fixture
def key_store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys")


@pytest.fixture
def run(key_store: KeyStore) -> Runner:
    return Runner(key_store)
