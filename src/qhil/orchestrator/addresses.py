"""Where each instrument of a profile is reached: its own resource, or its emulator's.

This is the one place outside the emulators that looks at
``resource = "emulated"``: it swaps in the address the emulator was served at.
Drivers, the bench and experiments only ever see a resource string.
"""

from __future__ import annotations

from collections.abc import Mapping

from qhil.errors import ConfigError
from qhil.orchestrator.profile import EMULATED, Profile

#: (node, instrument name) -> resource string, as from ``EmulatedBench.addresses()``.
AddressMap = Mapping[tuple[str, str], str]


def needs_emulators(profile: Profile) -> bool:
    """True when some instrument is to be served by its emulator."""
    return any(spec.resource == EMULATED for _, _, spec in profile.instruments())


def resolve_resources(
    profile: Profile, emulated: AddressMap | None = None
) -> dict[tuple[str, str], str]:
    """The resource string of every instrument, in profile order.

    ``emulated`` gives the addresses of the instruments whose profile resource
    is ``"emulated"``; it may not name instruments the profile does not have,
    or ones with a real address (that would silently redirect hardware).
    """
    emulated = dict(emulated or {})
    source = profile.source or "<profile>"
    out: dict[tuple[str, str], str] = {}
    for node, name, spec in profile.instruments():
        field = f"nodes.{node}.instruments.{name}.resource"
        if spec.resource == EMULATED:
            address = emulated.pop((node, name), None)
            if address is None:
                raise ConfigError(
                    source,
                    field,
                    "is 'emulated' but no emulator address was given for it "
                    "(use open_bench(), or pass EmulatedBench(profile).start().addresses())",
                )
            out[(node, name)] = address
        else:
            if (node, name) in emulated:
                raise ConfigError(
                    source,
                    field,
                    f"has the real address {spec.resource!r}; an emulator address "
                    f"({emulated[(node, name)]!r}) was given for it too",
                )
            out[(node, name)] = spec.resource
    if emulated:
        unknown = ", ".join(f"{n}.{i}" for n, i in emulated)
        raise ConfigError(
            source, "nodes", f"emulator addresses given for unknown instruments: {unknown}"
        )
    return out
