"""A BB84 bench's start-up pays for neither qutip nor pyfftw (each >= 0.25 s of imports)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from qhil.emulators.world.quantum.states import spdc_pair_state
from qhil.emulators.world.sources import pair_density


@pytest.mark.parametrize("bell", ["phi+", "phi-", "psi+", "psi-"])
@pytest.mark.parametrize("noise", ["white", "dephased"])
@pytest.mark.parametrize("visibility", [0.0, 0.83, 1.0])
def test_pair_density_is_the_quantum_packages_spdc_pair_state(
    bell: str, noise: str, visibility: float
) -> None:
    expected = spdc_pair_state(visibility, bell, noise).full()  # type: ignore[arg-type]
    np.testing.assert_allclose(pair_density(visibility, bell, noise), expected, atol=1e-15)


@pytest.mark.slow  # a fresh interpreter: ~2 s idle
def test_the_default_world_and_the_qkd_numerics_import_neither_qutip_nor_pyfftw() -> None:
    code = (
        "import sys\n"
        "from qhil.orchestrator.profile import load_profile\n"
        "from qhil.emulators.world import World, load_world_config\n"
        "import qhil.numerics.qkd, qhil.cli\n"
        "p = load_profile('default')\n"
        "World(load_world_config(p.world, 'default'))\n"
        "print('qutip' in sys.modules, 'pyfftw' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["False", "False"], out.stderr
