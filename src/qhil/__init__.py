"""qhil: the control layer of a quantum-network lab bench.

Drivers for photon sources, detectors, time taggers, memories and the optics
around them; a faithful emulator per instrument backed by one physical model
of the bench; an asyncio orchestrator for BB84, entanglement distribution and
clock synchronisation; calibration routines and run records.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qhil")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
