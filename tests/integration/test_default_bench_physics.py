"""On the default emulated bench, drivers move the physics exactly as on hardware.

The test reaches into the world only to set up Alice's pattern and to read the
ground truth it compares against; the instruments are driven through their
drivers over their wire protocols.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from scipy import stats

from qhil.drivers.hp.hp8156a import HP8156A
from qhil.drivers.ozoptics.epc400 import EPC400
from qhil.drivers.santec.tsl570 import TSL570
from qhil.drivers.singlequantum.eos import Eos
from qhil.emulators.bench import EmulatedBench
from qhil.orchestrator.profile import load_profile


@pytest.fixture
def bench() -> Iterator[EmulatedBench]:
    with EmulatedBench(load_profile()) as b:
        yield b


def _h_fraction_counts(bench: EmulatedBench, window_s: float) -> tuple[int, int]:
    """Clicks on bob's H and V detectors while alice sends only H (signal intensity)."""
    world = bench.world
    world.transmitter("alice.transmitter").set_pattern(np.zeros(1 << 12, dtype=np.uint8))
    counter = world.counter(["bob.det_h", "bob.det_v"])
    block = counter.read(window_s)
    h, v = (int(c) for c in block.counts)
    return h, v


async def test_polarization_controller_voltages_set_the_error_rate(bench: EmulatedBench) -> None:
    world = bench.world
    res = bench.addresses()
    async with HP8156A.open(res[("alice", "attenuator")]) as att:
        await att.set_output(True)  # the shutter is closed at power-on
    counts_port = bench.extra_addresses()[("bob", "snspd")]["counts"]
    async with Eos.open(res[("bob", "snspd")], counts_resource=counts_port) as snspd:
        await snspd.set_bias(20.0)  # the controller powers on disabled, at zero bias
        await snspd.set_enabled(True)
    async with EPC400.open(res[("bob", "polctrl")]) as epc:
        good = world.truth.compensating_voltages("bob.polctrl", "alice.transmitter")
        await epc.set_voltages_mv([round(v) for v in good])
        h_good, v_good = _h_fraction_counts(bench, 2e-3)
        # Half-wave on one squeezer: H is turned far from H.
        wrong = [round(v) for v in good]
        wrong[1] = max(-5000, min(5000, wrong[1] + 2000))
        await epc.set_voltages_mv(wrong)
        h_bad, v_bad = _h_fraction_counts(bench, 2e-3)
    e_good = v_good / (h_good + v_good)
    e_bad = v_bad / (h_bad + v_bad)
    assert h_good + v_good > 1000 and h_bad + v_bad > 1000
    # Compensated: error fraction at the PBS/detector floor (< 3 %); wrong voltages: far above.
    assert e_good < 0.03
    # Two-sided test that the two error fractions differ, at 99.9 % confidence.
    table = [[v_good, h_good], [v_bad, h_bad]]
    assert stats.chi2_contingency(table).pvalue < 1e-3 and e_bad > 0.2


async def test_attenuator_sets_the_mean_photon_number(bench: EmulatedBench) -> None:
    world = bench.world
    res = bench.addresses()
    async with HP8156A.open(res[("alice", "attenuator")]) as att:
        await att.set_output(True)
        await att.set_attenuation_db(0.0)
        mu0 = world.truth.mean_photon_numbers("alice.transmitter")[0]
        await att.set_attenuation_db(6.0)
        mu6 = world.truth.mean_photon_numbers("alice.transmitter")[0]
    assert mu6 / mu0 == pytest.approx(10 ** (-6.0 / 10), rel=1e-9)


async def test_laser_settings_reach_the_world(bench: EmulatedBench) -> None:
    res = bench.addresses()
    async with TSL570.open(res[("alice", "laser")]) as laser:
        await laser.set_wavelength_nm(1549.32)
        await laser.set_output(True)
    light = bench.world.component("alice.laser")
    assert light.wavelength_nm == pytest.approx(1549.32) and light.enabled
