"""Polarization compensation split over two nodes (qhil.calibration.remote_reference).

Alice's generator and Bob's tagger and controller are the role doubles of
tests/calibration/doubles.py, each on its own side of an authenticated in-process
channel, and only reached from its own side. The split search must be the in-process
search: on the same link model, seed and pattern lengths it makes the same
measurements and ends at the same voltages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from qhil.calibration import CalibrationError, PolarizationSettings, calibrate_polarization
from qhil.calibration.polarization import PolarizationCalibration
from qhil.calibration.remote_reference import (
    RemoteReferenceReport,
    compensate_with_remote_reference,
    serve_remote_reference,
)
from qhil.drivers.roles import PatternGenerator, PolarizationController, TimeTagger
from qhil.orchestrator.channel import (
    AuthenticationError,
    AuthKey,
    ChannelError,
    HmacSha256Authenticator,
    Tamper,
    in_process_channels,
)

from .doubles import CHANNEL_MAP, Doubles, LinkModel, doubles, residual_angle
from .test_polarization_doubles import random_link

KEY = AuthKey(bytes.fromhex("5eed" * 16))
SETTINGS = PolarizationSettings.model_validate({"channel_map": CHANNEL_MAP, "rep_rate_hz": 80e6})


async def _channels(tamper_b_to_a: Tamper | None = None) -> tuple[Any, Any]:
    a, b = in_process_channels(
        HmacSha256Authenticator(KEY),
        HmacSha256Authenticator(KEY),
        tamper_b_to_a=tamper_b_to_a,
        timeout_s=10.0,
    )
    await asyncio.gather(a.open(), b.open())
    return a, b


async def split(
    d: Doubles,
    alice_settings: PolarizationSettings | None = SETTINGS,
    bob_settings: PolarizationSettings | None = SETTINGS,
    *,
    tamper_b_to_a: Tamper | None = None,
) -> tuple[
    RemoteReferenceReport | BaseException | None, PolarizationCalibration | BaseException | None
]:
    """Alice serves with her generator only, Bob compensates with his tagger and controller."""
    a, b = await _channels(tamper_b_to_a)
    try:
        alice, bob = await asyncio.gather(
            serve_remote_reference(
                a, d.generator, alice_settings, timeout_s=10.0, rng=np.random.default_rng(0)
            ),
            compensate_with_remote_reference(
                b, d.tagger, d.controller, bob_settings, timeout_s=10.0
            ),
            return_exceptions=True,
        )
    finally:
        await asyncio.gather(a.close(), b.close())
    return alice, bob


async def in_process(link: LinkModel) -> PolarizationCalibration:
    d = doubles(link)
    return await calibrate_polarization(
        d.generator,
        d.tagger,
        d.controller,
        rng=np.random.default_rng(0),
        **SETTINGS.routine_kwargs(),
    )


def _steps(r: PolarizationCalibration) -> Sequence[tuple[Any, ...]]:
    return [(s.phase, s.measurement.voltages_mv, s.measurement.under_h) for s in r.steps]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
async def test_split_search_is_the_in_process_search(seed: int) -> None:
    one = await in_process(random_link(seed))
    d = doubles(random_link(seed))
    alice, bob = await split(d)
    assert isinstance(bob, PolarizationCalibration), bob
    assert isinstance(alice, RemoteReferenceReport), alice
    # Same measurements in the same order, so the same voltages and error fractions.
    assert bob.voltages_mv == one.voltages_mv
    assert _steps(bob) == _steps(one)
    assert (bob.e_z.value, bob.e_x.value) == (one.e_z.value, one.e_x.value)
    assert bob.target_met and d.link.voltages == list(bob.voltages_mv)
    # Alice made each reference live and saw each count (her record); her output is off.
    assert alice.references == len(d.generator.loaded) == 2 * len(bob.steps)
    assert alice.measured.shape == (bob.acquisitions, 6)
    assert alice.results["v1_mv"] == bob.voltages_mv[0]
    assert alice.results["target_met"] is True
    assert d.generator.output_calls == [True, False]


async def test_no_light_stops_both_and_restores_the_voltages() -> None:
    link = random_link(5, light=False)
    link.voltages = [100, -200, 300, -400]
    d = doubles(link)
    alice, bob = await split(d)
    assert isinstance(bob, CalibrationError) and "too few clicks" in str(bob)
    assert isinstance(alice, CalibrationError) and "too few clicks" in str(alice)
    assert "Bob's polarization compensation failed" in str(alice)
    assert d.generator.output_calls == [True, False]
    assert link.voltages == [100, -200, 300, -400]


async def test_both_off_exchange_only_the_plan_and_leave_the_channel_usable() -> None:
    d = doubles(random_link(6))
    a, b = await _channels()
    try:
        alice, bob = await asyncio.gather(
            serve_remote_reference(a, d.generator, None, timeout_s=10.0),
            compensate_with_remote_reference(b, d.tagger, None, None, timeout_s=10.0),
        )
        assert alice is None and bob is None
        assert d.generator.loaded == [] and d.controller.writes == []
        await a.send("next", {"x": 1})
        assert (await b.recv("next")).payload == {"x": 1}
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_parties_that_disagree_about_compensating_both_stop() -> None:
    d = doubles(random_link(7))
    alice, bob = await split(d, alice_settings=None)
    for exc in (alice, bob):
        assert isinstance(exc, CalibrationError), exc
        assert "calibrate_polarization differs" in str(exc)
    assert d.generator.loaded == [] and d.controller.writes == []


async def test_reference_settings_must_agree() -> None:
    d = doubles(random_link(8))
    other = SETTINGS.model_copy(update={"intensity_index": 1})
    alice, bob = await split(d, alice_settings=other)
    assert isinstance(alice, CalibrationError) and "intensity_index 0 (Alice: 1)" in str(alice)
    assert isinstance(bob, CalibrationError) and "intensity_index" in str(bob)


async def test_differing_max_acquisitions_are_refused_up_front() -> None:
    # Alice caps Bob's reference requests with her max_acquisitions: both must agree on
    # it before the search, not find out when she stops him mid-search.
    d = doubles(random_link(8))
    other = SETTINGS.model_copy(update={"max_acquisitions": 40})
    alice, bob = await split(d, alice_settings=other)
    mine = SETTINGS.max_acquisitions
    assert isinstance(alice, CalibrationError), alice
    assert f"max_acquisitions {mine} (Alice: 40)" in str(alice)
    assert isinstance(bob, CalibrationError) and "max_acquisitions" in str(bob)
    assert d.generator.loaded == [] and d.controller.writes == []


def _flip_nth(n: int) -> Tamper:
    """Flip a byte of Bob's ``n``-th frame to Alice (0 = his handshake)."""
    seen = [0]

    def tamper(frame: bytes) -> list[bytes]:
        seen[0] += 1
        if seen[0] - 1 == n:
            b = bytearray(frame)
            b[-1] ^= 0x01
            return [bytes(b)]
        return [frame]

    return tamper


async def test_a_tampered_request_stops_both_and_switches_alices_light_off() -> None:
    link = random_link(9)
    start = list(link.voltages)
    d = doubles(link)
    # Bob's frames: handshake, Plan, Request(H), Measured, Request(D): tamper the 2nd Request.
    alice, bob = await split(d, tamper_b_to_a=_flip_nth(4))
    assert isinstance(alice, AuthenticationError), alice
    assert isinstance(bob, ChannelError | CalibrationError), bob
    assert d.generator.output_calls == [True, False]
    assert link.voltages == start


@pytest.mark.slow
async def test_split_search_on_the_emulated_bench_matches_the_in_process_one() -> None:
    """On the default emulated bench (33500B over SCPI, TDC1 and EPC-400 over serial, a
    random fibre), with the same seed: Alice's generator on one side, Bob's tagger and
    controller on the other. Both meet the 1 % target, the world's truth agrees (the
    whole path is nearly the identity), and the voltages are the same."""
    from .test_polarization_bench import emulated_default

    found = []
    for split_it in (False, True):
        async with emulated_default(707) as (bench, world):
            gen = bench.role("alice", PatternGenerator, name="patterns")
            tagger = bench.role("bob", TimeTagger, name="tagger")
            ctrl = bench.role("bob", PolarizationController)
            if split_it:
                a, b = await _channels()
                try:
                    _, r = await asyncio.gather(
                        serve_remote_reference(
                            a, gen, SETTINGS, timeout_s=30.0, rng=np.random.default_rng(0)
                        ),
                        compensate_with_remote_reference(b, tagger, ctrl, SETTINGS, timeout_s=30.0),
                    )
                finally:
                    await asyncio.gather(a.close(), b.close())
            else:
                r = await calibrate_polarization(
                    gen, tagger, ctrl, rng=np.random.default_rng(0), **SETTINGS.routine_kwargs()
                )
            assert r is not None
            angle = residual_angle(world.truth.path_rotation("alice.transmitter"))
            found.append((r, angle))
    (one, one_angle), (two, two_angle) = found
    for r, angle in found:
        assert r.target_met and r.e_z.upper(0.95) < 0.01 and r.e_x.upper(0.95) < 0.01
        assert angle < 0.15
    # The emulated world is seeded and driven by the same commands in the same order, so
    # the split search makes the same measurements and ends where the in-process one does.
    assert two.voltages_mv == one.voltages_mv
    assert _steps(two) == _steps(one)
    assert two_angle == one_angle


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("polcal.Request", {"step": -1, "state": "H"}),
        ("polcal.Request", {"step": 1, "state": "X"}),
        ("polcal.Request", {"step": 1, "state": "H", "extra": 0}),
        ("polcal.Live", {"step": 1, "state": "H"}),
        ("polcal.Measured", {"step": 1, "state": "H", "counts": [1, 2, 3], "integration_s": 1e-3}),
        ("polcal.Measured", {"step": 1, "state": "H", "counts": [1, 2, 3, -4], "integration_s": 1}),
        (
            "polcal.Plan",
            {
                "version": 1,
                "enabled": 1,
                "pattern_length": 8,
                "intensity_index": 0,
                "rep_rate_hz": 1.0,
                "max_acquisitions": 150,
            },
        ),
        ("polcal.Done", {"results": {"a": [1]}}),
        ("bb84.Hello", {}),
    ],
)
def test_malformed_messages_are_refused_by_name(kind: str, payload: dict[str, Any]) -> None:
    from qhil.calibration.remote_reference import from_payload

    with pytest.raises(CalibrationError, match="polarization compensation"):
        from_payload(kind, payload)


async def test_alice_stops_a_bob_who_never_ends() -> None:
    d = doubles(random_link(10))
    small = SETTINGS.model_copy(update={"max_acquisitions": 4})
    a, b = await _channels()

    async def endless_bob() -> None:
        from qhil.calibration.remote_reference import Live, Plan, Request, _expect, _send

        await _send(
            b,
            Plan(
                1, True, small.pattern_length, small.intensity_index, 80e6, small.max_acquisitions
            ),
        )
        await b.recv()  # Ready
        for step in range(1, 100):
            await _send(b, Request(step, "H"))
            if not isinstance(await _expect(b, 10.0, Live), Live):
                return

    try:
        alice, _ = await asyncio.gather(
            serve_remote_reference(a, d.generator, small, timeout_s=10.0),
            endless_bob(),
            return_exceptions=True,
        )
    finally:
        await asyncio.gather(a.close(), b.close())
    assert isinstance(alice, CalibrationError) and "more than 8 reference blocks" in str(alice)
    assert len(d.generator.loaded) == 8 and d.generator.output_calls == [True, False]
