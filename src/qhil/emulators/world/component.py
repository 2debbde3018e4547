"""What every world component has: a qualified name, its node, its config, a reset."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

from .errors import WorldSettingError


class Component:
    """Base of runtime components. Settings are plain attributes/properties."""

    kind: ClassVar[str] = "component"

    def __init__(self, name: str, node: str, cfg: Any, now_s: Callable[[], float]) -> None:
        self.name = name
        self.node = node
        self.cfg = cfg
        self._now_s = now_s
        # Called after a setting that acts on photons changes (the world re-draws the
        # photons still in flight towards this component).
        self._changed: Callable[[Component], None] | None = None

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed(self)

    def reset(self) -> None:
        """Restore the power-on settings from the profile."""

    def _bad(self, setting: str, value: object, allowed: str) -> WorldSettingError:
        return WorldSettingError(self.name, setting, value, allowed)

    def _finite(
        self, setting: str, value: float, lo: float = -math.inf, hi: float = math.inf
    ) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise self._bad(setting, value, "a number") from None
        if not (math.isfinite(v) and lo <= v <= hi):
            raise self._bad(setting, value, f"a finite number in [{lo:g}, {hi:g}]")
        return v

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def db_to_transmission(db: float) -> float:
    return 10.0 ** (-db / 10.0)
