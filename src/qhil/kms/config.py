"""The KMEs' configuration file (``kms.toml``, written by ``qhil kms init-ca``).

Paths in it are relative to the file. One ``[kme.<node>]`` table per node; the two KMEs
share ``[limits]`` (the ETSI GS QKD 014 status fields they announce) and the CA.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from qhil.errors import ConfigError

DEFAULT_KEY_SIZE = 256
#: 2^18 keys of 256 bits = 64 Mbit (8 MB): about a minute of the default emulated bench's
#: ~1 Mbit/s of secret key. 4096 (1 Mbit) filled after two default runs, and a continuous run
#: then paused at once ('key store full') until an application drew keys.
DEFAULT_MAX_KEY_COUNT = 1 << 18
DEFAULT_MAX_KEY_PER_REQUEST = 128
DEFAULT_MIN_KEY_SIZE = 64
DEFAULT_MAX_KEY_SIZE = 8192


class Limits(BaseModel):
    """What a KME announces in its status and enforces on enc_keys (sizes in bits)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_size: int = Field(default=DEFAULT_KEY_SIZE, gt=0, multiple_of=8)
    max_key_count: int = Field(default=DEFAULT_MAX_KEY_COUNT, gt=0)
    max_key_per_request: int = Field(default=DEFAULT_MAX_KEY_PER_REQUEST, gt=0)
    min_key_size: int = Field(default=DEFAULT_MIN_KEY_SIZE, gt=0, multiple_of=8)
    max_key_size: int = Field(default=DEFAULT_MAX_KEY_SIZE, gt=0, multiple_of=8)

    @model_validator(mode="after")
    def _ordered(self) -> Limits:
        if not self.min_key_size <= self.key_size <= self.max_key_size:
            raise ValueError(
                f"need min_key_size <= key_size <= max_key_size (got {self.min_key_size}, "
                f"{self.key_size}, {self.max_key_size})"
            )
        return self


class KmeEntry(BaseModel):
    """One node's KME: its identity, where it listens, its certificate, its SAEs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kme_id: str = Field(min_length=1)
    listen: str = "127.0.0.1:8443"
    url: str | None = None  # how the other KME reaches it (default https://<listen>)
    cert: Path
    key: Path
    sae_ids: list[str] = Field(min_length=1)

    @property
    def peer_url(self) -> str:
        return self.url or f"https://{self.listen}"


class KmsConfig(BaseModel):
    """The whole file: the CA both KMEs trust, the limits, exactly two KMEs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca: Path
    limits: Limits = Field(default_factory=Limits)
    kme: dict[str, KmeEntry]
    source: str = "kms.toml"

    @model_validator(mode="after")
    def _two_nodes(self) -> KmsConfig:
        if len(self.kme) != 2:
            raise ValueError(f"exactly two [kme.<node>] tables are needed (got {len(self.kme)})")
        a, b = self.kme.values()
        if a.kme_id == b.kme_id:
            raise ValueError(f"the two KMEs have the same kme_id {a.kme_id!r}")
        shared = set(a.sae_ids) & set(b.sae_ids)
        if shared:
            raise ValueError(f"SAE IDs attached to both KMEs: {sorted(shared)}")
        # an SAE certificate named like a KME would pass as that KME on /kme/v1
        clash = (set(a.sae_ids) | set(b.sae_ids)) & {a.kme_id, b.kme_id}
        if clash:
            raise ValueError(f"SAE IDs equal to a KME ID: {sorted(clash)}")
        return self

    def node(self, name: str) -> KmeEntry:
        if name not in self.kme:
            raise ConfigError(
                self.source, "kme", f"no node {name!r} (nodes: {', '.join(sorted(self.kme))})"
            )
        return self.kme[name]

    def peer_of(self, name: str) -> tuple[str, KmeEntry]:
        self.node(name)
        (other,) = (n for n in self.kme if n != name)
        return other, self.kme[other]


def load_config(path: str | Path) -> KmsConfig:
    """Read and validate ``kms.toml``; a problem is a :class:`ConfigError` naming file and field."""
    file = Path(path)
    try:
        data: dict[str, Any] = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigError(
            str(file), "(file)", "not found (create one with 'qhil kms init-ca DIR')"
        ) from None
    except OSError as exc:
        raise ConfigError(str(file), "(file)", exc.strerror or str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(file), "(file)", f"not TOML: {exc}") from None
    try:
        config = KmsConfig.model_validate({**data, "source": str(file)})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top)"
        raise ConfigError(str(file), where, err["msg"]) from None
    base = file.parent
    # paths are relative to the file, so the directory init-ca made can be moved whole
    kme = {
        name: entry.model_copy(update={"cert": base / entry.cert, "key": base / entry.key})
        for name, entry in config.kme.items()
    }
    return config.model_copy(update={"ca": base / config.ca, "kme": kme})
