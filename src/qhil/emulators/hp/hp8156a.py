"""Emulated HP 8156A optical attenuator (protocol: docs/protocols/hp-8156a.md).

SCPI core (IEEE 488.2 common commands, ``SYST:ERR?`` queue, short/long forms,
``;`` compounds) from :class:`ScpiEmulator`; numbers with units (``10dB``,
``1310NM``, ``1.55UM``, metres by default for the wavelength); replies in the
instrument's ``+2.50000000E+000`` form. The filter attenuation ``α - offset``
and the shutter drive the world attenuator, so they set the mean photon number
of every source whose path runs through it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from qhil.drivers.hp.hp8156a import FILTER_RANGE_DB, HP8156A, OFFSET_RANGE_DB, WAVELENGTH_NM
from qhil.drivers.values import Float, SuffixError, nr3, special_word
from qhil.emulators.base import Raw, on
from qhil.emulators.scpi import DATA_OUT_OF_RANGE, ScpiEmulator, ScpiError

_POWER_ON_WAVELENGTH_NM = 1310.0  # a real unit answered +1.31000000E-006 (default UNVERIFIED)
# Parameters whose MIN/MAX/DEF depend on the instrument's state (the offset).
_LIMITED = ("attenuation", "offset", "wavelength_nm")


class HP8156AEmulator(ScpiEmulator):
    driver = HP8156A
    identity: ClassVar[tuple[str, str, str, str]] = ("HEWLETT-PACKARD", "HP8156A", "0", "1.00")
    input_terminators = b"\n"
    default_port = None  # GPIB on the real instrument; any TCP port here

    def __init__(self, *, options: str = "High Performance,0,0", **kw: Any) -> None:
        self.options = options
        self.shutter_power_on_last = False
        self._shutter_at_off = False
        super().__init__(**kw)

    def power_on_state(self) -> None:
        super().power_on_state()
        self.offset_db = 0.0
        self.filter_db = 0.0  # α_filter; α = α_filter + offset
        self.wavelength_nm = _POWER_ON_WAVELENGTH_NM
        self.lcm = False
        # Shutter closed at power-on unless APOWeron LAST (factory state UNVERIFIED).
        self.shutter = self._shutter_at_off if self.shutter_power_on_last else False
        self.display = True
        self.brightness = 1.0
        self._push_to_world()

    def status_byte_value(self) -> int:
        # The 8156A status byte has no error-queue bit (bit 2 unused).
        return super().status_byte_value() & ~(1 << 2)

    def _push_to_world(self) -> None:
        self._shutter_at_off = self.shutter
        if self.world is None or not self.component:
            return
        att = self.world.attenuator(self.component)
        att.attenuation_db = self.filter_db
        att.shutter_open = self.shutter
        att.wavelength_nm = self.wavelength_nm

    # --- numbers with units and MIN/DEF/MAX ---

    def _parse(self, decl: Any, field: str, text: str) -> Any:
        # Units (DB, NM, UM, ...) are declared on the driver's values; this adds the
        # state-dependent limits and the instrument's error for a bad suffix.
        word = special_word(text)
        if field == "value" and word and decl.name in _LIMITED:
            return self._limit(decl.name, word)
        vt = decl.value if field == "value" else decl.args[field]
        if isinstance(vt, Float) and not word:
            try:
                vt.parse(text)
            except SuffixError as exc:
                raise ScpiError(exc.code, exc.text) from None
            except ValueError:
                pass  # malformed: the core's error
        return super()._parse(decl, field, text)

    def _limit(self, name: str, which: str) -> float:
        if name == "attenuation":
            return self.offset_db + (FILTER_RANGE_DB if which == "MAX" else 0.0)
        if name == "offset":
            return {"MIN": -OFFSET_RANGE_DB, "MAX": OFFSET_RANGE_DB, "DEF": 0.0}[which]
        lo, hi = WAVELENGTH_NM
        return {"MIN": lo, "MAX": hi, "DEF": _POWER_ON_WAVELENGTH_NM}[which]

    # --- handlers ---

    @on("options.get")
    def _opt(self) -> Raw:
        return Raw(self.options)

    @on("attenuation.get")
    def _att_q(self) -> Raw:
        return Raw(nr3(self.filter_db + self.offset_db))

    @on("attenuation.set")
    def _att(self, value: float) -> None:
        filt = round(value - self.offset_db, 3)
        if not 0.0 <= filt <= FILTER_RANGE_DB:
            raise ScpiError(*DATA_OUT_OF_RANGE)
        self.filter_db = filt
        self._push_to_world()

    @on("attenuation_limit.get")
    def _att_lim(self, which: str) -> Raw:
        word = {"min": "MIN", "max": "MAX", "default": "DEF"}[which]
        return Raw(nr3(self._limit("attenuation", word)))

    @on("offset.get")
    def _offs_q(self) -> Raw:
        return Raw(nr3(self.offset_db))

    @on("offset.set")
    def _offs(self, value: float) -> None:
        if abs(value) > OFFSET_RANGE_DB:
            raise ScpiError(*DATA_OUT_OF_RANGE)
        # The filter stays where it is; the displayed α moves with the offset.
        self.offset_db = round(value, 3)

    @on("offset_from_display")
    def _offs_disp(self) -> None:
        self.offset_db = round(self.filter_db + self.offset_db, 3)

    @on("wavelength_nm.get")
    def _wav_q(self) -> Raw:
        return Raw(nr3(self.wavelength_nm * 1e-9))

    @on("wavelength_nm.set")
    def _wav(self, value: float) -> None:
        lo, hi = WAVELENGTH_NM
        if not lo - 1e-6 <= value <= hi + 1e-6:
            raise ScpiError(*DATA_OUT_OF_RANGE)
        self.wavelength_nm = round(value, 3)
        self._push_to_world()

    @on("lambda_calibration.get")
    def _lcm_q(self) -> Raw:
        return Raw("1" if self.lcm else "0")

    @on("lambda_calibration.set")
    def _lcm(self, value: bool) -> None:
        self.lcm = value

    @on("shutter_open.get")
    def _outp_q(self) -> Raw:
        return Raw("1" if self.shutter else "0")

    @on("shutter_open.set")
    def _outp(self, value: bool) -> None:
        self.shutter = value
        self._push_to_world()

    @on("shutter_at_power_on.get")
    def _apow_q(self) -> Raw:
        return Raw("1" if self.shutter_power_on_last else "0")

    @on("shutter_at_power_on.set")
    def _apow(self, value: str) -> None:
        self.shutter_power_on_last = value == "last"

    @on("display_enabled.set")
    def _disp(self, value: bool) -> None:
        self.display = value

    @on("display_brightness.set")
    def _brig(self, value: float) -> None:
        self.brightness = value

    def default_for(self, name: str, field: str) -> Any:
        if name == "display_brightness":
            return 1.0
        return super().default_for(name, field)
