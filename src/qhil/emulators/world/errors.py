"""Errors the world raises at run time (configuration errors are `qhil.errors.ConfigError`)."""

from __future__ import annotations

from qhil.errors import QhilError


class WorldError(QhilError):
    """Base of the world's run-time errors."""


class WorldSettingError(WorldError, ValueError):
    """A setting an instrument emulator wrote is out of the component's range."""

    def __init__(self, component: str, setting: str, value: object, allowed: str) -> None:
        self.component = component
        self.setting = setting
        self.value = value
        self.allowed = allowed
        super().__init__(f"{component}.{setting}: {value!r} is not allowed ({allowed})")


class WorldTimeError(WorldError):
    """A request that the simulated timeline cannot serve (e.g. reading the future in realtime)."""


class UnknownComponentError(WorldError, KeyError):
    """No component, node, link or reader of that name (or not of the requested kind)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
