"""Emulated OZ Optics EPC-400 (protocol: docs/protocols/ozoptics-epc400.md).

One content line then ``Done`` per command, no echo; an unknown command or a
bad / out-of-range parameter is answered by a single ``Error!`` line. The DC
voltages, in DC mode, set the retardances of the four fibre squeezers, which
the world turns into the unitary applied on the link.
"""

from __future__ import annotations

from typing import Any

from qhil.drivers.ozoptics.epc400 import DONE, EPC400, ERROR, ChannelOutputs
from qhil.drivers.values import ValueTypeError
from qhil.emulators.base import Emulator, on

CRLF = "\r\n"
#: What a soft reset prints: two lines, no Done. Only the line count is known ([S4][S5]);
#: the text is our choice (the second line is the firmware banner [S4] quotes).
RESET_LINES = ("Reset Device", "EPC OEM Driver V2.10")


class WithoutDone(str):
    """A handler's reply lines sent as they are, with no ``Done`` after them."""


class BadParameter(Exception):
    """A command matched but its parameter is not allowed: answer Error!."""


class EPC400Emulator(Emulator):
    driver = EPC400
    transport = "serial"
    input_terminators = b"\r\n"  # clients send CRLF; a bare CR or LF also ends a command

    def power_on_state(self) -> None:
        preset = getattr(self, "preset", None)
        self.voltages = list(preset["voltages"]) if preset else [0, 0, 0, 0]
        self.frequencies = list(preset["frequencies"]) if preset else [7, 17, 37, 71]
        self.mode = preset["mode"] if preset else "DC"
        self.waveform = preset["waveform"] if preset else "Sine"
        self.dc_in_ac = False
        self.channel_is_v = [False] * 4
        self._push_to_world()

    def _push_to_world(self) -> None:
        if self.world is None or not self.component:
            return
        pc = self.world.component(self.component)
        # In AC mode the squeezers scramble; the world sees the DC setting only in DC mode.
        pc.set_voltages(self.voltages if self.mode == "DC" else [0, 0, 0, 0])
        pc.scrambling = self.mode != "DC"

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["identity"] = "OZ Optics,EPC-400,EPC-EMU-0001,V2.10"
        return d

    def error_reply(self, message: bytes, code: int | str, text: str) -> bytes:
        return (ERROR + CRLF).encode()

    async def respond(self, message: bytes) -> bytes:
        text = message.decode("ascii", errors="replace").strip().upper()
        found = self.find_route(text)
        if found is None:
            return (ERROR + CRLF).encode()
        route, raw = found
        try:
            parsed = {}
            for k, v in raw.items():
                vt = route.decl.args[k] if k != "value" else route.decl.value  # type: ignore[attr-defined]
                parsed[k] = vt.validate(vt.parse(v))
            content = route.handler(self, **parsed)
        except (ValueTypeError, ValueError, BadParameter):
            return (ERROR + CRLF).encode()
        if isinstance(content, WithoutDone):
            return (content + CRLF).encode()
        if route.kind == "get":
            content = route.decl.reply_template.emit(value=content)  # type: ignore[attr-defined]
        return (str(content) + CRLF + DONE + CRLF).encode()

    # --- handlers: a get returns the value, a set or action its acknowledgement line ---

    @on("voltages.get")
    def _v_q(self) -> list[int]:
        return self.voltages

    @on("voltage.set")
    def _v(self, channel: int, value: int) -> str:
        self.voltages[channel - 1] = value
        self._push_to_world()
        return f"Set CH{channel} DC Voltage at: {value}mV"

    @on("voltage_high")
    def _vh(self, channel: int) -> str:
        return self._v(channel, 5000)

    @on("voltage_low")
    def _vl(self, channel: int) -> str:
        return self._v(channel, -5000)

    @on("voltage_zero")
    def _vz(self, channel: int) -> str:
        return self._v(channel, 0)

    @on("frequencies.get")
    def _f_q(self) -> list[int]:
        return self.frequencies

    @on("frequency.set")
    def _f(self, channel: int, value: int) -> str:
        self.frequencies[channel - 1] = value
        return f"Set CH{channel} AC Frequency at: {value}Hz"

    @on("mode.get")
    def _m_q(self) -> str:
        if self.mode == "DC":
            return "dc"
        return "ac" if self.waveform == "Sine" else "ac_triangle"

    @on("mode.set")
    def _m(self, value: str) -> str:
        self.mode = value.upper()
        self._push_to_world()
        return "Set To DC Mode" if self.mode == "DC" else "Set To AC Mode"

    @on("waveform.get")
    def _wf_q(self) -> str:
        return self.waveform.lower()

    @on("waveform.set")
    def _wf(self, value: str) -> str:
        self.waveform = value.capitalize()
        return f"Set AC Waveform at: {self.waveform}"

    @on("dc_in_ac_mode.set")
    def _envf(self, value: bool) -> str:
        self.dc_in_ac = value
        return f"{'Enable' if value else 'Disable'} DC Voltage Output at AC Mode"

    @on("toggle_channel_ac_dc")
    def _vf(self, channel: int) -> str:
        self.channel_is_v[channel - 1] = not self.channel_is_v[channel - 1]
        unit = "Volt (if possible)" if self.channel_is_v[channel - 1] else "Hz"
        return f"Set CH{channel} output to: {unit}"

    @on("channel_outputs.get")
    def _vf_q(self) -> ChannelOutputs:
        return ChannelOutputs(self.dc_in_ac, tuple(self.channel_is_v))

    @on("reset", "restart")
    def _reset(self) -> WithoutDone:
        self.power_on_state()  # the power-up preset, as after switching on
        return WithoutDone(CRLF.join(RESET_LINES))

    @on("save")
    def _save(self) -> str:
        self.preset = {
            "voltages": list(self.voltages),
            "frequencies": list(self.frequencies),
            "mode": self.mode,
            "waveform": self.waveform,
        }
        return "Write Setting to Flash memory"

    @on("serial_number.get")
    def _sn(self) -> str:
        return "EPC-EMU-0001"

    @on("firmware.get")
    def _ver(self) -> str:
        return "V2.10"
