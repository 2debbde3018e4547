"""Emulated S-Fifteen SPD avalanche-photodiode module (protocol: docs/protocols/s-fifteen-spd.md).

Bound to a world ``detector`` component: ``hvolt`` is its bias (efficiency, dark
counts and afterpulsing follow the world's bias curves), ``threshvolt`` its
discriminator threshold, and the APD temperature its temperature (dark counts
double every ``dark_doubling_c``). ``counts?`` answers, after one gate, the
clicks the world registers on that detector in the gate.

Choices where the module is not documented (UNVERIFIED): identity text; an
unknown command answers ``Unknown command``, a value beyond the physical limits
``Error: value out of range``; with the loop off the APD sits
``PELTIER_K_PER_V`` K below ambient per volt on the peltier.
"""

from __future__ import annotations

from typing import Any

from qhil.drivers.sfifteen.spd import SPD
from qhil.emulators.base import on
from qhil.emulators.sfifteen.common import S15Emulator

IDENTITY = "S-Fifteen Instruments SPD single photon detector, firmware 1.0 (emulated)"
SAVE_MESSAGE = "Settings saved"
AMBIENT_C = 25.0
PELTIER_K_PER_V = 15.0
# Power-on values without a world (with one, bias/threshold/temperature come from it).
DEFAULT_HVOLT = 120.0
DEFAULT_THRESHOLD_V = 0.1
DEFAULT_SETTEMP_C = -20.0


class SPDEmulator(S15Emulator):
    driver = SPD

    def __init__(self, *, identity: str = IDENTITY, ambient_c: float = AMBIENT_C, **kw: Any):
        self.identity = identity
        self.ambient_c = ambient_c
        self.preset: dict[str, Any] | None = None
        super().__init__(**kw)

    def _detector(self) -> Any:
        return (
            self.world.detector(self.component)
            if self.world is not None and self.component
            else None
        )

    def power_on_state(self) -> None:
        det = self._detector()
        self.hvolt = float(det.bias) if det is not None else DEFAULT_HVOLT
        self.threshvolt = float(det.threshold_v) if det is not None else DEFAULT_THRESHOLD_V
        self.settemp = float(det.temperature_c) if det is not None else DEFAULT_SETTEMP_C
        self.time_ms = 1000.0
        self.loop = True
        self.pvolt = 0.0
        self.constp = 1.0
        self.consti = 0.1
        self.delay = 0.0
        if self.preset is not None:
            for k, v in self.preset.items():
                setattr(self, k, v)
        self._push_to_world()

    def apd_temperature_c(self) -> float:
        if self.loop:
            return self.settemp
        return self.ambient_c - PELTIER_K_PER_V * self.pvolt

    def _push_to_world(self) -> None:
        det = self._detector()
        if det is None:
            return
        # Setting order: a refused value (WorldSettingError) leaves the earlier ones applied,
        # so handlers validate against the world before changing their own state.
        det.bias = self.hvolt
        det.threshold_v = self.threshvolt
        det.set_temperature_c(self.apd_temperature_c())

    def _apply(self, **changes: Any) -> None:
        """Change settings, and the world with them; all or nothing."""
        old = {k: getattr(self, k) for k in changes}
        for k, v in changes.items():
            setattr(self, k, v)
        try:
            self._push_to_world()
        except ValueError:
            for k, v in old.items():
                setattr(self, k, v)
            self._push_to_world()
            raise

    async def gate_counts(self) -> int:
        """Clicks registered in one gate starting now (the reply waits for the gate)."""
        seconds = self.time_ms / 1000.0
        if self.world is None or not self.component:
            return 0
        counter = self.world.counter([self.component])
        try:
            block = await counter.read_async(seconds)
        finally:
            counter.close()
        return int(block.counts[0])

    # --- handlers ---

    @on("save_reply.get")
    def _save(self) -> str:
        names = ("hvolt", "threshvolt", "settemp", "time_ms", "loop", "constp", "consti", "delay")
        self.preset = {k: getattr(self, k) for k in names}
        return SAVE_MESSAGE

    @on("high_voltage_v.get")
    def _hvolt_q(self) -> float:
        return self.hvolt

    @on("high_voltage_v.set")
    def _hvolt(self, value: float) -> None:
        self._apply(hvolt=value)

    @on("threshold_v.get")
    def _thresh_q(self) -> float:
        return self.threshvolt

    @on("threshold_v.set")
    def _thresh(self, value: float) -> None:
        self._apply(threshvolt=value)

    @on("gate_ms.get")
    def _time_q(self) -> float:
        return self.time_ms

    @on("gate_ms.set")
    def _time(self, value: float) -> None:
        self.time_ms = value

    @on("gate_counts.get")
    async def _counts(self) -> int:
        return await self.gate_counts()

    @on("temperature_c.get")
    def _temp(self) -> float:
        return self.apd_temperature_c()

    @on("temperature_setpoint_c.get")
    def _settemp_q(self) -> float:
        return self.settemp

    @on("temperature_setpoint_c.set")
    def _settemp(self, value: float) -> None:
        self._apply(settemp=value)

    @on("loop.get")
    def _loop_q(self) -> bool:
        return self.loop

    @on("loop.set")
    def _loop(self, value: bool) -> None:
        self._apply(loop=value)

    @on("peltier_voltage.get")
    def _pvolt_q(self) -> float:
        if self.loop:  # the loop's voltage for the setpoint
            return (self.ambient_c - self.settemp) / PELTIER_K_PER_V
        return self.pvolt

    @on("peltier_voltage.set")
    def _pvolt(self, value: float) -> None:
        self._apply(pvolt=value)

    @on("loop_p.get")
    def _constp_q(self) -> float:
        return self.constp

    @on("loop_p.set")
    def _constp(self, value: float) -> None:
        self.constp = value

    @on("loop_i.get")
    def _consti_q(self) -> float:
        return self.consti

    @on("loop_i.set")
    def _consti(self, value: float) -> None:
        self.consti = value

    @on("delay.get")
    def _delay_q(self) -> float:
        return self.delay

    @on("delay.set")
    def _delay(self, value: float) -> None:
        self.delay = value
