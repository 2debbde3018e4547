"""Why a BB84 run stops without a key: one typed exception with a typed reason."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from qhil.errors import QhilError

if TYPE_CHECKING:
    from qhil.orchestrator.experiments.bb84.result import BB84Result


class AbortReason(StrEnum):
    """The reason a run was aborted (stored as the run record's reason)."""

    #: The test-basis (before reconciliation) or key-basis (after) QBER of the signal
    #: intensity exceeded ``max_qber``: an eavesdropper, or a misaligned bench.
    QBER_TOO_HIGH = "qber_too_high"
    #: The keys' verification hashes differ after reconciliation.
    VERIFICATION_FAILED = "verification_failed"
    #: A classical message failed authentication (the channel raised).
    AUTHENTICATION_FAILED = "authentication_failed"
    #: The finite-key bound leaves no secret bits (length <= 0).
    NO_KEY = "no_key"
    #: No block could be aligned, or no detections survived sifting.
    NO_DATA = "no_data"
    #: The peer sent something the protocol does not allow at that point (or settings differ).
    PROTOCOL_ERROR = "protocol_error"
    #: The peer did not answer within ``message_timeout_s``, or the channel closed.
    CHANNEL_FAILED = "channel_failed"
    #: The peer stopped on an error of its own (an instrument fault, say).
    PEER_FAILED = "peer_failed"
    #: The final keys' confirmation tags differ (after privacy amplification).
    CONFIRMATION_FAILED = "confirmation_failed"
    #: A party could not write (or commit) its key in its key store; the message names
    #: the path. The peer discards its pending key too.
    KEY_STORE_FAILED = "key_store_failed"
    #: The polarization compensation before the key exchange did not reach its target
    #: (no light at Bob, a link too lossy, the peer's reference failed).
    CALIBRATION_FAILED = "calibration_failed"
    #: A party of a continuous run was told to stop (SIGINT/SIGTERM) while this key was
    #: in progress: the key is discarded at both nodes, as a failed confirmation is.
    STOPPED = "stopped"


class BB84Aborted(QhilError):
    """The BB84 run ended without a key.

    ``reason`` says why (an :class:`AbortReason`), ``detail`` gives the numbers;
    ``result`` holds what was measured up to the abort (QBER, gains...) when
    available, with ``status == "aborted"``. ``from_peer`` is True when the other
    party aborted first and told us. Messages never contain key bits.
    """

    def __init__(
        self,
        reason: AbortReason,
        detail: str,
        *,
        result: BB84Result | None = None,
        from_peer: bool = False,
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.result = result
        self.from_peer = from_peer
        who = "peer aborted: " if from_peer else ""
        super().__init__(f"BB84 aborted ({reason.value}): {who}{detail}")


class ProtocolViolation(QhilError):
    """A classical message is malformed or arrives out of order."""
