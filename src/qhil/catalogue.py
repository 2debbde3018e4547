"""The instrument catalogue: profile model names -> driver and emulator classes.

Imports are lazy (module paths as strings), so listing the catalogue or loading
a lab profile does not import every emulator and the physics behind them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Entry:
    """One instrument model: its driver, its emulator, and its role(s)."""

    model: str
    driver: str  # "module:Class"
    emulator: str  # "module:Class"
    roles: tuple[str, ...]
    description: str

    def driver_class(self) -> Any:
        return _load(self.driver)

    def emulator_class(self) -> Any:
        return _load(self.emulator)


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


CATALOGUE: dict[str, Entry] = {
    e.model: e
    for e in [
        Entry(
            "santec.tsl570",
            "qhil.drivers.santec.tsl570:TSL570",
            "qhil.emulators.santec.tsl570:TSL570Emulator",
            ("PhotonSource",),
            "Santec TSL-570 tunable laser (SCPI, TCP socket port 5000)",
        ),
        Entry(
            "ozoptics.epc400",
            "qhil.drivers.ozoptics.epc400:EPC400",
            "qhil.emulators.ozoptics.epc400:EPC400Emulator",
            ("PolarizationController",),
            "OZ Optics EPC-400 polarization controller (serial 9600 8N1)",
        ),
        Entry(
            "qubitekk.cc1",
            "qhil.drivers.qubitekk.cc1:CC1",
            "qhil.emulators.qubitekk.cc1:CC1Emulator",
            ("CoincidenceCounter",),
            "Qubitekk CC1 two-input coincidence counter (serial 19200 8N1; firmware dialects)",
        ),
        Entry(
            "hp.8156a",
            "qhil.drivers.hp.hp8156a:HP8156A",
            "qhil.emulators.hp.hp8156a:HP8156AEmulator",
            ("Attenuator",),
            "HP/Agilent 8156A optical attenuator (GPIB SCPI; emulated on a TCP socket)",
        ),
        Entry(
            "singlequantum.eos",
            "qhil.drivers.singlequantum.eos:Eos",
            "qhil.emulators.singlequantum.eos:EosEmulator",
            ("Detector",),
            "Single Quantum Eos SNSPD controller (JSON control TCP 12000, count stream 12345)",
        ),
        Entry(
            "sfifteen.spdc",
            "qhil.drivers.sfifteen.spdc:SPDCSource",
            "qhil.emulators.sfifteen.spdc:SPDCSourceEmulator",
            ("EntangledPhotonSource",),
            "S-Fifteen SPDC source driver board (CPPS/EPPS; USB serial, ';'-terminated)",
        ),
        Entry(
            "sfifteen.spd",
            "qhil.drivers.sfifteen.spd:SPD",
            "qhil.emulators.sfifteen.spd:SPDEmulator",
            ("Detector",),
            "S-Fifteen SPD avalanche-photodiode module (USB serial)",
        ),
        Entry(
            "sfifteen.tdc1",
            "qhil.drivers.sfifteen.tdc1:TDC1",
            "qhil.emulators.sfifteen.tdc1:TDC1Emulator",
            ("TimeTagger",),
            "S-Fifteen TDC1 timestamp / coincidence unit (USB serial; binary timestamp stream)",
        ),
        Entry(
            "keysight.33500b",
            "qhil.drivers.keysight.ks33500b:Keysight33500B",
            "qhil.emulators.keysight.ks33500b:Keysight33500BEmulator",
            ("PatternGenerator",),
            "Keysight/Agilent 33500B/33600A two-channel AWG as BB84 pattern source "
            "(SCPI, TCP socket port 5025)",
        ),
        Entry(
            "qhil.qmc",
            "qhil.drivers.qhil.qmc:QMC",
            "qhil.emulators.qhil.qmc:QMCEmulator",
            ("QuantumMemory", "NetworkMemory"),
            "qhil QMC-1 quantum-memory controller (qhil's own SCPI set, TCP socket port 5031)",
        ),
        Entry(
            "qhil.hsc",
            "qhil.drivers.qhil.hsc:HSC",
            "qhil.emulators.qhil.hsc:HSCEmulator",
            ("HeraldingStation",),
            "qhil HSC-1 heralding station of a memory-memory link (qhil's own SCPI set, "
            "TCP socket port 5032)",
        ),
        Entry(
            "thorlabs.pm100d",
            "qhil.drivers.thorlabs.pm100d:PM100D",
            "qhil.emulators.thorlabs.pm100d:PM100DEmulator",
            ("PowerMeter",),
            "Thorlabs PM100D/PM100USB optical power meter (SCPI over USBTMC; emulated on a "
            "TCP socket)",
        ),
        Entry(
            "thorlabs.ell14",
            "qhil.drivers.thorlabs.ell14:ELL14",
            "qhil.emulators.thorlabs.ell14:ELL14Emulator",
            ("RotationMount",),
            "Thorlabs Elliptec ELL14 rotation mount (serial 9600 8N1, Elliptec ASCII protocol; "
            "addresses 0-F on one bus)",
        ),
        # Catalogue entries for further instruments go here, one per model.
    ]
}


def entry(model: str) -> Entry:
    try:
        return CATALOGUE[model]
    except KeyError:
        raise KeyError(f"unknown instrument model {model!r}; known: {sorted(CATALOGUE)}") from None
