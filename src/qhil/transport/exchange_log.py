"""Exchange log: every transaction as (time, bytes out, bytes in), savable and replayable.

A log recorded against hardware or an emulator becomes a byte-exact protocol
test: replay it with :class:`qhil.transport.replay.ReplayIO` and the driver must
send exactly the recorded bytes.

A sensitive exchange (key material) is recorded as a placeholder that keeps only
the lengths of what went out and came in; a replay accepts any bytes of that
length there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Exchange:
    """One transaction: seconds since the log started, bytes written, bytes read.

    ``sensitive`` is ``(bytes out, bytes in)`` for a placeholder: the bytes were
    key material, so ``out`` and ``inp`` are empty and only their lengths are kept.
    """

    t: float
    out: bytes
    inp: bytes
    sensitive: tuple[int, int] | None = None

    def to_json(self) -> str:
        # latin-1 maps every byte to one code point: lossless and readable for ASCII.
        d: dict[str, object] = {
            "t": round(self.t, 6),
            "out": self.out.decode("latin-1"),
            "in": self.inp.decode("latin-1"),
        }
        if self.sensitive is not None:
            d["sensitive"] = list(self.sensitive)
        return json.dumps(d)

    @classmethod
    def from_json(cls, line: str) -> Exchange:
        d = json.loads(line)
        lengths = d.get("sensitive")
        return cls(
            float(d["t"]),
            d["out"].encode("latin-1"),
            d["in"].encode("latin-1"),
            None if lengths is None else (int(lengths[0]), int(lengths[1])),
        )


@dataclass
class ExchangeLog:
    """An append-only record of a session's traffic."""

    resource: str = ""
    entries: list[Exchange] = field(default_factory=list)
    _t0: float = field(default_factory=time.monotonic, repr=False)

    def record(self, out: bytes | memoryview, inp: bytes, *, sensitive: bool = False) -> None:
        """Append one exchange; a sensitive one as a length-only placeholder."""
        t = time.monotonic() - self._t0
        if sensitive:
            self.entries.append(Exchange(t, b"", b"", (len(out), len(inp))))
        else:
            self.entries.append(Exchange(t, bytes(out), inp))

    def __iter__(self) -> Iterator[Exchange]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def save(self, path: str | Path) -> None:
        p = Path(path)
        with p.open("w", encoding="utf-8") as f:
            f.write(json.dumps({"resource": self.resource}) + "\n")
            for e in self.entries:
                f.write(e.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ExchangeLog:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        head = json.loads(lines[0]) if lines else {}
        return cls(
            resource=str(head.get("resource", "")),
            entries=[Exchange.from_json(x) for x in lines[1:] if x.strip()],
        )
