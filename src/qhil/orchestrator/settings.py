"""Profile settings -> driver calls.

A setting ``key = value`` in ``nodes.<node>.instruments.<name>.settings`` is
either a settable :class:`~qhil.drivers.declarations.Control` of the driver
called ``key`` (``wavelength_nm = 1550.0``) or a role method ``set_<key>``
(``voltages_mv = [0, 0, 0, 0]`` -> ``set_voltages_mv``). Every setting of the
bench is resolved, and every Control value validated, before the first byte is
sent, so a typo in a profile changes nothing on the bench.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from qhil.drivers.declarations import Control, Measurement
from qhil.drivers.instrument import Instrument
from qhil.errors import ConfigError
from qhil.errors import ValidationError as DriverValidationError


@dataclass(frozen=True)
class PlannedSetting:
    """One resolved setting, ready to send."""

    key: str
    field: str  # profile field path, for error messages
    apply: Callable[[], Awaitable[None]]


def settable_names(driver: Instrument | type[Instrument]) -> list[str]:
    """Every setting name the driver (instance or class) accepts in a profile."""
    cls = driver if isinstance(driver, type) else type(driver)
    names = {
        name
        for name, decl in cls.declarations().items()
        if isinstance(decl, Control) and decl.set_template is not None
    }
    for attr in dir(cls):
        if attr.startswith("set_") and inspect.iscoroutinefunction(getattr(cls, attr)):
            names.add(attr.removeprefix("set_"))
    return sorted(names)


def plan_settings(
    driver: Instrument, settings: Mapping[str, Any], *, source: str, prefix: str
) -> list[PlannedSetting]:
    """Resolve ``settings`` against ``driver``; ConfigError names the field and the file.

    ``prefix`` is the profile path of the instrument, ``nodes.<node>.instruments.<name>``.
    """
    return [
        _plan_one(driver, key, value, source, f"{prefix}.settings.{key}")
        for key, value in settings.items()
    ]


def check_settings(
    driver_class: type[Instrument], settings: Mapping[str, Any], *, source: str, prefix: str
) -> None:
    """What :func:`plan_settings` checks, from the driver's class alone (no instrument):
    every name is a setting, every Control value is in range. ``qhil profile show`` runs
    it, so a profile is refused there as ``qhil run`` would refuse it. (A role method's
    own checks run only when it is called.)"""
    for key, value in settings.items():
        _resolve(driver_class, key, value, source, f"{prefix}.settings.{key}")


def _resolve(
    cls: type[Instrument], key: str, value: Any, source: str, field: str
) -> tuple[Control[Any], Any, dict[str, Any]] | None:
    """A Control setting: (declaration, value, arguments), validated; a role method: None."""
    decl = cls.declarations().get(key)
    if isinstance(decl, Control):
        return _check_control(cls, decl, key, value, source, field)
    method = getattr(cls, f"set_{key}", None)
    if method is not None and inspect.iscoroutinefunction(method):
        return None
    known = ", ".join(settable_names(cls)) or "none"
    what = "an action, not a setting" if decl is not None else "unknown setting"
    raise ConfigError(source, field, f"{what} {key!r} for {cls.__name__}; settable: {known}")


def _plan_one(driver: Instrument, key: str, value: Any, source: str, field: str) -> PlannedSetting:
    control = _resolve(type(driver), key, value, source, field)
    if control is None:
        return PlannedSetting(
            key, field, _role_call(getattr(driver, f"set_{key}"), value, source, field)
        )
    _, checked, args = control
    bound = getattr(driver, key)

    async def apply() -> None:
        await bound.set(checked, **args)

    return PlannedSetting(key, field, apply)


def _check_control(
    cls: type[Instrument], decl: Control[Any], key: str, value: Any, source: str, field: str
) -> tuple[Control[Any], Any, dict[str, Any]]:
    template = decl.set_template
    if template is None or isinstance(decl, Measurement):
        raise ConfigError(source, field, f"{key!r} of {cls.__name__} is read-only")
    args: dict[str, Any] = {}
    if decl.args:
        # A Control with arguments (a channel, say) takes a table: { channel = 2, value = 100 }.
        names = sorted(decl.args)
        if not isinstance(value, Mapping) or set(value) != {*names, "value"}:
            raise ConfigError(
                source,
                field,
                f"{key!r} needs its argument(s) {', '.join(names)}: write a table such as "
                f"{{ {', '.join(f'{n} = ...' for n in names)}, value = ... }}",
            )
        args = {n: value[n] for n in names}
        value = value["value"]
    try:
        template.render(value=value, **args)  # validate now; nothing is sent yet
    except DriverValidationError as exc:
        raise ConfigError(source, field, f"{exc.value!r} is not allowed ({exc.allowed})") from None
    return decl, value, args


def _role_call(
    method: Callable[[Any], Awaitable[None]], value: Any, source: str, field: str
) -> Callable[[], Awaitable[None]]:
    async def apply() -> None:
        try:
            await method(value)
        except (DriverValidationError, ValueError, TypeError) as exc:
            # Refused by the driver before sending: the profile value is at fault.
            raise ConfigError(source, field, str(exc)) from None

    return apply
