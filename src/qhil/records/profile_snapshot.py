"""The bench profile as it was when a run started: validated content, source file, hashes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from qhil.records.jsonable import canonical_sha256, to_jsonable


class ProfileSnapshot(BaseModel):
    """``data`` is the validated profile as plain JSON values.

    ``source_sha256`` is the SHA-256 of the profile file's bytes (None when the
    profile was built in code); ``data_sha256`` hashes the validated content with
    sorted keys, so two runs on the same bench compare equal even if the files
    differ in comments or layout.
    """

    model_config = ConfigDict(frozen=True)

    data: dict[str, Any]
    source_path: str | None = None
    source_sha256: str | None = None
    data_sha256: str

    @classmethod
    def capture(
        cls,
        profile: BaseModel | Mapping[str, Any],
        source: str | os.PathLike[str] | None = None,
        *,
        source_bytes: bytes | None = None,
    ) -> ProfileSnapshot:
        """Snapshot a validated profile; hash ``source`` (or ``source_bytes``, if the loader
        kept the exact bytes it parsed, which avoids racing an edit of the file).

        Without ``source``, a pydantic profile's own ``source`` attribute (the
        file :func:`qhil.orchestrator.profile.load_profile` read) is used if it
        names a file.
        """
        if source is None and isinstance(profile, BaseModel):
            # qhil's own Profile remembers the file it was loaded from
            remembered = getattr(profile, "source", None)
            if isinstance(remembered, str) and remembered and Path(remembered).is_file():
                source = remembered
        data = to_jsonable(profile, "profile")
        if not isinstance(data, dict):
            raise TypeError(f"profile must be a mapping or a pydantic model, not {type(profile)}")
        source_path = str(Path(source).resolve()) if source is not None else None
        if source_bytes is None and source is not None:
            source_bytes = Path(source).read_bytes()
        return cls(
            data=data,
            source_path=source_path,
            source_sha256=hashlib.sha256(source_bytes).hexdigest()
            if source_bytes is not None
            else None,
            data_sha256=canonical_sha256(data),
        )
