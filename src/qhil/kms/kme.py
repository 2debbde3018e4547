"""One node's Key Management Entity: the ETSI GS QKD 014 operations, HTTP aside.

Which bits a key_ID names is decided by ONE of the two KMEs, the *allocator* (the one
whose KME ID sorts first), so the two never hand out the same bits. Key material never
crosses the KME link: the KMEs exchange only (sha256, start, end) chunks of key files
that both hold.

enc_keys at the master SAE's KME, ``begin`` recorded first; then either

* it is the allocator: it reserves the next chunks (in memory only), reads the keys,
  asks the peer to ``store`` them for the slave SAE (the peer fsyncs them with the new
  cursor before it answers), records ``done`` with the new cursor and answers the SAE; or
* the peer is: the peer ``allocate``s, storing the keys for its slave SAE (fsync'd)
  and answering with the chunks; this KME reads the same bits from its own files,
  records ``done`` and answers the SAE.

Any failure before ``done`` voids the allocation on both sides (the peer is told, now
or, if unreachable, at the next contact); a KME restarting with a ``begin`` that has no
``done`` voids it likewise. No new allocation starts before the peer has heard of every
void (else enc_keys answers 503, using no key material), and the peer's answer carries
its cursor: so the allocator never reuses bits that the peer stored for a void
allocation, while bits that never reached the peer (an unreachable peer) go back to the
pool instead of being lost. A
slave-side key is deleted when its SAE fetches it (``served`` fsync'd before the
answer), so no key is ever served twice; the master side keeps no key at all. A key
that a master SAE received can always be fetched once by its slave SAE.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from qhil.kms.config import KmeEntry, KmsConfig
from qhil.kms.ledger import Ledger
from qhil.kms.material import Chunk, Material, available_bits, keys_from_bits, take_chunks

log = logging.getLogger(__name__)

PEER_PREFIX = "/kme/v1"


class KmeError(Exception):
    """An answer other than 200: the HTTP status and the standard's error body."""

    def __init__(self, status: int, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class PeerError(Exception):
    """The peer KME could not be reached, or refused (``status``, its error body's
    ``message`` and ``details``; ``str()`` is for logs: it names the peer's URL)."""

    def __init__(
        self,
        text: str,
        status: int | None = None,
        message: str = "",
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(text)
        self.status = status
        self.message = message
        self.details = details


_T = TypeVar("_T")
PeerCall = Callable[[str, str, dict[str, Any] | None], Awaitable[dict[str, Any]]]


def _rules(details: list[dict[str, Any]]) -> KmeError:
    return KmeError(400, "requested parameters do not adhere to KME rules", details)


class Kme:
    """The state and the operations of the KME of ``node``."""

    def __init__(self, config: KmsConfig, node: str, key_dir: str | Path, peer: PeerCall) -> None:
        self.config = config
        self.node = node
        self.entry: KmeEntry = config.node(node)
        self.peer_node, self.peer_entry = config.peer_of(node)
        self.limits = config.limits
        self.material = Material(key_dir, node)
        self.ledger = Ledger(Path(key_dir) / f"kme-{node}")
        self.peer = peer
        self.is_allocator = self.entry.kme_id < self.peer_entry.kme_id
        self._lock = asyncio.Lock()
        self._inflight = 0
        self._peer_shas: set[str] = set()
        # the allocator's reservations not yet fsync'd (bits of enc_keys in flight)
        self._reserved: dict[str, int] = {}

    # -- life cycle ------------------------------------------------------------------

    async def recover(self) -> None:
        """Void what a crash left begun; tell the peer (now if it answers, else later);
        learn the peer's cursor (so that stored_key_count counts what the peer used)."""
        for alloc in sorted(self.ledger.state.begun):
            log.warning(
                "kme %s: voiding allocation %s left unfinished by a restart", self.node, alloc
            )
            self.ledger.append({"op": "void", "alloc": alloc, "tell": True})
        if await self._tell_voids():
            await self._sync_cursor()

    async def _sync_cursor(self) -> None:
        """Merge the peer's cursor (best effort: a peer that is down is asked later)."""
        try:
            await self._refresh_peer_shas()
        except PeerError as exc:
            log.warning("kme %s: peer's cursor not fetched: %s", self.node, exc)

    async def _tell_voids(self) -> bool:
        """Tell the peer of our void allocations; False if it could not be reached."""
        pending = sorted(self.ledger.state.tell_void)
        if not pending:
            return True
        try:
            answer = await self.peer("POST", "/void", {"allocs": pending, "cursor": self._cursor()})
        except PeerError as exc:
            log.warning(
                "kme %s: peer not told of %d void allocation(s) yet: %s",
                self.node,
                len(pending),
                exc,
            )
            return False
        # the peer's cursor covers what it stored for these allocations: merged (fsync'd)
        # before they are marked told, so those bits are never allocated again
        self._merge_cursor(answer.get("cursor", {}))
        self.ledger.append({"op": "told", "allocs": pending})
        return True

    def close(self) -> None:
        self.ledger.close()

    # -- ETSI GS QKD 014 --------------------------------------------------------------

    def check_sae(self, caller: str | None) -> str:
        if caller is None:
            raise KmeError(401, "a client certificate is required (mutual TLS)")
        if caller not in self.entry.sae_ids:
            raise KmeError(401, f"SAE {caller!r} is not attached to {self.entry.kme_id}")
        return caller

    def _check_peer_sae(self, sae: str, role: str) -> None:
        if sae not in self.peer_entry.sae_ids:
            raise KmeError(
                400,
                f"{role} {sae!r} is not an SAE of {self.peer_entry.kme_id}",
                [{role: sae}],
            )

    def status(self, caller: str | None, slave: str) -> dict[str, Any]:
        master = self.check_sae(caller)
        self._check_peer_sae(slave, "slave_SAE_ID")
        lim = self.limits
        return {
            "source_KME_ID": self.entry.kme_id,
            "target_KME_ID": self.peer_entry.kme_id,
            "master_SAE_ID": master,
            "slave_SAE_ID": slave,
            "key_size": lim.key_size,
            "stored_key_count": self.stored_key_count(),
            "max_key_count": lim.max_key_count,
            "max_key_per_request": lim.max_key_per_request,
            "max_key_size": lim.max_key_size,
            "min_key_size": lim.min_key_size,
            "max_SAE_ID_count": 0,
        }

    def stored_key_count(self) -> int:
        bits = available_bits(self.material.files(), self._alloc_cursor())
        return min(bits // self.limits.key_size, self.limits.max_key_count)

    def _check_request(self, body: dict[str, Any]) -> tuple[int, int]:
        lim = self.limits
        details: list[dict[str, Any]] = []
        number, size = body.get("number", 1), body.get("size", lim.key_size)
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            details.append({"number_unsupported": f"number {number!r} is not a positive integer"})
        elif number > lim.max_key_per_request:
            details.append(
                {
                    "number_unsupported": f"requested number of keys ({number}) is higher than the maximum number of keys per request ({lim.max_key_per_request})"
                }
            )
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            details.append({"size_unsupported": f"size {size!r} is not a positive integer"})
        else:
            if size % 8:
                details.append(
                    {
                        "size_not_multiple_of_8": f"requested size of keys ({size}) is not a multiple of 8"
                    }
                )
            if size > lim.max_key_size:
                details.append(
                    {
                        "size_unsupported": f"requested size of keys ({size}) is higher than max_key_size ({lim.max_key_size})"
                    }
                )
            if size < lim.min_key_size:
                details.append(
                    {
                        "size_unsupported": f"requested size of keys ({size}) is lower than min_key_size ({lim.min_key_size})"
                    }
                )
        extra = body.get("additional_slave_SAE_IDs") or []
        if extra:
            details.append(
                {
                    "additional_slave_SAE_IDs": "key multicast is not supported (max_SAE_ID_count is 0)"
                }
            )
        mandatory = body.get("extension_mandatory") or []
        if mandatory:
            names = [n for item in mandatory if isinstance(item, dict) for n in item]
            details.append(
                {"extension_mandatory_unsupported": f"extensions not supported: {names}"}
            )
        if details:
            raise _rules(details)
        return int(number), int(size)

    async def enc_keys(
        self, caller: str | None, slave: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        master = self.check_sae(caller)
        self._check_peer_sae(slave, "slave_SAE_ID")
        number, size = self._check_request(body)
        if not await self._tell_voids():
            # no allocation before the peer knows of the void ones: 503, no key material used
            raise KmeError(503, f"peer KME {self.peer_entry.kme_id} unavailable")
        alloc = str(uuid.uuid4())
        key_ids = [str(uuid.uuid4()) for _ in range(number)]
        try:
            if self.is_allocator:
                keys = await self._enc_as_allocator(alloc, master, slave, key_ids, size)
            else:
                keys = await self._enc_via_peer(alloc, master, slave, key_ids, size)
        except BaseException:
            if alloc in self.ledger.state.begun:
                self.ledger.append({"op": "void", "alloc": alloc, "tell": True})
            raise
        log.info(
            "kme %s: %d key(s) of %d bits for %s -> %s", self.node, number, size, master, slave
        )
        return {
            "keys": [
                {"key_ID": k, "key": base64.b64encode(v).decode()}
                for k, v in zip(key_ids, keys, strict=True)
            ]
        }

    def _not_enough(self, number: int, size: int) -> KmeError:
        have = available_bits(self.material.files(), self._alloc_cursor())
        return KmeError(
            400,
            "keys are being exhausted",
            [
                {
                    "keys_exhausted": f"{number} key(s) of {size} bits requested, {have // size} stored"
                }
            ],
        )

    async def _refresh_peer_shas(self) -> None:
        inventory = await self.peer("GET", "/inventory", None)
        self._peer_shas = {sha for sha, _ in inventory["keys"]}
        self._merge_cursor(inventory.get("cursor", {}))

    def _shared_files(self, peer_shas: set[str]) -> list[Any]:
        return [f for f in self.material.files() if f.sha256 in peer_shas]

    def _alloc_cursor(self) -> dict[str, int]:
        """The fsync'd cursor raised by the reservations of enc_keys in flight."""
        cursor = dict(self.ledger.state.cursor)
        for sha, end in self._reserved.items():
            cursor[sha] = max(cursor.get(sha, 0), end)
        return cursor

    def _allocate(self, number: int, size: int, peer_shas: set[str]) -> list[Chunk] | None:
        return take_chunks(self._shared_files(peer_shas), self._alloc_cursor(), number * size)

    async def _enc_as_allocator(
        self, alloc: str, master: str, slave: str, key_ids: list[str], size: int
    ) -> list[bytes]:
        number = len(key_ids)
        if self._allocate(number, size, self._peer_shas) is None:
            await self._call(self._refresh_peer_shas())
        async with self._lock:
            chunks = self._allocate(number, size, self._peer_shas)
            if chunks is None:
                raise self._not_enough(number, size)
            keys = keys_from_bits(self.material.read(chunks), number, size)
            # the cursor is NOT advanced on disk yet: a peer that cannot be reached must
            # not cost key material; a crash from here on voids ``alloc`` at restart and
            # the peer's answer to that void carries the cursor of whatever it stored
            before = {sha: self._alloc_cursor().get(sha, 0) for sha, _, _ in chunks}
            ends = _ends(chunks)
            self._reserved.update(ends)
            self.ledger.append({"op": "begin", "alloc": alloc})
        try:
            await self._call(
                self.peer(
                    "POST",
                    "/store",
                    {
                        "alloc": alloc,
                        "master": master,
                        "slave": slave,
                        "size": size,
                        "key_IDs": key_ids,
                        "chunks": chunks,
                        "cursor": {**self._cursor(), **ends},
                    },
                )
            )
            async with self._lock:
                self.ledger.append({"op": "done", "alloc": alloc, "cursor": ends})
        finally:
            async with self._lock:
                for sha, end in ends.items():
                    if self._reserved.get(sha) == end:  # no later reservation: give back
                        if before[sha] > self.ledger.state.cursor.get(sha, 0):
                            self._reserved[sha] = before[sha]
                        else:
                            del self._reserved[sha]
        async with self._lock:
            self._collect()
        return keys

    async def _enc_via_peer(
        self, alloc: str, master: str, slave: str, key_ids: list[str], size: int
    ) -> list[bytes]:
        number = len(key_ids)
        files = self.material.files()
        if available_bits(files, self.ledger.state.cursor) < number * size:
            raise self._not_enough(number, size)
        async with self._lock:
            self.ledger.append({"op": "begin", "alloc": alloc})
            self._inflight += 1
        try:
            try:
                answer = await self._call(
                    self.peer(
                        "POST",
                        "/allocate",
                        {
                            "alloc": alloc,
                            "master": master,
                            "slave": slave,
                            "size": size,
                            "key_IDs": key_ids,
                            "shas": [f.sha256 for f in files],
                        },
                    )
                )
            except KmeError as exc:
                if exc.status == 400:  # e.g. exhausted: our count was stale, learn the cursor
                    await self._sync_cursor()
                raise
            chunks = [(str(s), int(a), int(b)) for s, a, b in answer["chunks"]]
            async with self._lock:
                keys = keys_from_bits(self.material.read(chunks), number, size)
                self.ledger.append(
                    {
                        "op": "done",
                        "alloc": alloc,
                        "cursor": {**answer.get("cursor", {}), **_ends(chunks)},
                    }
                )
        finally:
            self._inflight -= 1
        async with self._lock:
            self._collect()
        return keys

    async def _call(self, call: Awaitable[_T]) -> _T:
        try:
            return await call
        except PeerError as exc:
            if exc.status == 400:
                # the peer's own error body (message, details), not its internal URL
                raise KmeError(400, exc.message or "refused by the peer KME", exc.details) from None
            log.warning("kme %s: peer KME unavailable: %s", self.node, exc)
            raise KmeError(503, f"peer KME {self.peer_entry.kme_id} unavailable") from None

    def dec_keys(self, caller: str | None, master: str, key_ids: list[str]) -> dict[str, Any]:
        slave = self.check_sae(caller)
        if not key_ids:
            raise KmeError(
                400, "no key_IDs given", [{"key_IDs": "at least one key_ID is required"}]
            )
        held = self.ledger.state.slave
        missing = [k for k in key_ids if k not in held]
        if missing:
            raise KmeError(
                400,
                "key_ID not found (unknown or already delivered)",
                [{"key_ID": k} for k in missing],
            )
        foreign = [k for k in key_ids if held[k].slave != slave or held[k].master != master]
        if foreign:
            raise KmeError(
                401,
                f"key_ID not addressed to SAE {slave!r} by master SAE {master!r}",
                [{"key_ID": k} for k in foreign],
            )
        if len(set(key_ids)) != len(key_ids):
            raise KmeError(400, "a key_ID is repeated in the request")
        keys = [{"key_ID": k, "key": held[k].key} for k in key_ids]
        self.ledger.append({"op": "served", "key_IDs": list(key_ids)})
        log.info("kme %s: delivered %d key(s) to %s", self.node, len(keys), slave)
        return {"keys": keys}

    # -- the peer KME's requests ------------------------------------------------------

    def check_peer(self, caller: str | None) -> None:
        if caller != self.peer_entry.kme_id:
            raise KmeError(401, f"only {self.peer_entry.kme_id} may use {PEER_PREFIX}")

    def inventory(self) -> dict[str, Any]:
        return {
            "keys": [[f.sha256, f.length_bits] for f in self.material.files()],
            "cursor": self._cursor(),
        }

    async def store(self, body: dict[str, Any]) -> dict[str, Any]:
        """The allocator's chunks for our slave SAE: read our copy, fsync, then answer."""
        chunks = [(str(s), int(a), int(b)) for s, a, b in body["chunks"]]
        size, key_ids = int(body["size"]), list(body["key_IDs"])
        async with self._lock:
            try:
                bits = self.material.read(chunks)
            except LookupError as exc:
                raise KmeError(409, str(exc)) from None
            keys = keys_from_bits(bits, len(key_ids), size)
            self._hold(
                body["alloc"],
                body["master"],
                body["slave"],
                key_ids,
                keys,
                {**body.get("cursor", {}), **_ends(chunks)},
            )
            self._collect()
        return {}

    async def allocate(self, body: dict[str, Any]) -> dict[str, Any]:
        """The peer's master SAE asks: allocate (we are the allocator), hold for our slave."""
        if not self.is_allocator:
            raise KmeError(409, f"{self.entry.kme_id} does not allocate")
        size, key_ids = int(body["size"]), list(body["key_IDs"])
        if body["slave"] not in self.entry.sae_ids:
            raise KmeError(
                400, f"slave_SAE_ID {body['slave']!r} is not an SAE of {self.entry.kme_id}"
            )
        self._peer_shas = set(body["shas"])
        async with self._lock:
            chunks = self._allocate(len(key_ids), size, self._peer_shas)
            if chunks is None:
                raise self._not_enough(len(key_ids), size)
            keys = keys_from_bits(self.material.read(chunks), len(key_ids), size)
            self._hold(body["alloc"], body["master"], body["slave"], key_ids, keys, _ends(chunks))
            self._collect()
            return {"chunks": chunks, "cursor": self._cursor()}

    def void(self, body: dict[str, Any]) -> dict[str, Any]:
        """The peer voided ``allocs``; our answer is our cursor (it covers what we stored)."""
        self._merge_cursor(body.get("cursor", {}))
        for alloc in body["allocs"]:
            if alloc not in self.ledger.state.voided:
                self.ledger.append({"op": "void", "alloc": alloc, "tell": False})
        return {"cursor": self._cursor()}

    # -- helpers ----------------------------------------------------------------------

    def _hold(
        self,
        alloc: str,
        master: str,
        slave: str,
        key_ids: list[str],
        keys: list[bytes],
        cursor: dict[str, int],
    ) -> None:
        self.ledger.append(
            {
                "op": "slave",
                "alloc": alloc,
                "cursor": cursor,
                "keys": [
                    {
                        "key_ID": k,
                        "master": master,
                        "slave": slave,
                        "key": base64.b64encode(v).decode(),
                    }
                    for k, v in zip(key_ids, keys, strict=True)
                ],
            }
        )

    def _cursor(self) -> dict[str, int]:
        return dict(self.ledger.state.cursor)

    def _merge_cursor(self, cursor: dict[str, int]) -> None:
        state = self.ledger.state.cursor
        newer = {s: int(e) for s, e in cursor.items() if int(e) > state.get(s, 0)}
        if newer:
            self.ledger.append({"op": "cursor", "cursor": newer})

    def _collect(self) -> None:
        """Delete the key files whose bits are all used up (never while an enc_keys via
        the peer may still read one)."""
        if self._inflight:
            return
        cursor = self.ledger.state.cursor
        for f in self.material.files():
            if cursor.get(f.sha256, 0) >= f.length_bits:
                self.material.delete(f.sha256)
                log.info("kme %s: key file %s used up, deleted", self.node, f.key_id)


def _ends(chunks: list[Chunk]) -> dict[str, int]:
    return {sha: end for sha, _, end in chunks}
