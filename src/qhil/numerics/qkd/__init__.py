"""QKD post-processing numerics: pure numpy/scipy, no I/O, no asyncio.

Every step that needs both parties is split into an Alice side and a Bob side
that exchange small public messages (numpy arrays, bytes, ints); a helper runs
both sides locally. The BB84 experiment carries the messages over its
authenticated classical channel. Full description: ``README.md`` beside this file.

Pipeline and public API
-----------------------
1. Sifting (:mod:`.sifting`): :class:`AliceRecord`, :func:`squash_clicks` (double
   and multi-clicks, squashing model) -> :class:`Detections`; messages
   :func:`bob_announce` -> :func:`alice_sift` -> :func:`bob_sift`; :func:`sift`.
2. Parameter estimation (:mod:`.decoy`): :class:`DecoyCounts` (gain and QBER per
   intensity), :func:`vacuum_weak_decoy_bounds` (Y1 lower, e1 upper; finite-size
   with Chernoff bounds at ``eps``), :func:`chernoff_interval`, :func:`decoy_key_rate`.
   Asymptotic GLLP rate of PHYSICS.md case 4 (:mod:`.gllp`): :func:`key_rate`,
   :func:`optimal_mu`, :func:`max_distance`, :class:`GllpParameters`.
3. Reconciliation (:mod:`.cascade`): :class:`CascadeSetup`, :class:`CascadeAlice`
   (answers :class:`ParityQuery` with :class:`ParityReply`, counts ``leaked_bits``),
   :class:`CascadeBob` (``next_query`` / ``receive``), :func:`reconcile`.
4. Verification (:mod:`.verification`): :func:`alice_verification` ->
   :class:`VerificationMessage` -> :func:`bob_verification`; :func:`verify_keys`
   raises :class:`VerificationError` (abort the frame).
5. Finite-key length (:mod:`.finite_key`): :class:`FiniteKeyInput`,
   :func:`secret_key_length` (Lim et al. 2014; eps_sec, eps_cor).
6. Privacy amplification (:mod:`.universal_hash`): multiply-add-shift, one GMP
   product; Alice draws :func:`new_pa_seed`, both call :func:`amplify` with the family
   named in the message (:data:`PA_FAMILY`, or ``"toeplitz"``: :mod:`.toeplitz`'s
   :func:`new_seed` and :func:`privacy_amplification`, exact FFT Toeplitz hashing).
   The verification tags (step 4) use multiply-add-shift too.
"""

from qhil.numerics.qkd.bits import as_bits, pack_bits, random_bits, unpack_bits
from qhil.numerics.qkd.cascade import (
    CascadeAlice,
    CascadeBob,
    CascadeSetup,
    CascadeStats,
    ParityQuery,
    ParityReply,
    ReconciliationResult,
    default_block_sizes,
    reconcile,
)
from qhil.numerics.qkd.decoy import (
    DecoyBounds,
    DecoyCounts,
    chernoff_interval,
    decoy_key_rate,
    vacuum_weak_decoy_bounds,
)
from qhil.numerics.qkd.entropy import binary_entropy
from qhil.numerics.qkd.finite_key import FiniteKeyInput, FiniteKeyResult, secret_key_length
from qhil.numerics.qkd.gllp import GllpParameters, key_rate, max_distance, optimal_mu
from qhil.numerics.qkd.sifting import (
    AliceRecord,
    Detections,
    SiftAnnouncement,
    SiftedKey,
    SiftReply,
    alice_sift,
    bob_announce,
    bob_sift,
    sift,
    squash_clicks,
)
from qhil.numerics.qkd.toeplitz import (
    new_seed,
    privacy_amplification,
    seed_length,
    toeplitz_hash,
    toeplitz_hash_direct,
)
from qhil.numerics.qkd.universal_hash import (
    PA_FAMILIES,
    PA_FAMILY,
    amplify,
    mas_hash,
    new_pa_seed,
    pa_seed_length,
)
from qhil.numerics.qkd.verification import (
    VerificationError,
    VerificationMessage,
    alice_verification,
    bob_verification,
    tag_bits_for,
    verify_keys,
)

__all__ = [
    "PA_FAMILIES",
    "PA_FAMILY",
    "AliceRecord",
    "CascadeAlice",
    "CascadeBob",
    "CascadeSetup",
    "CascadeStats",
    "DecoyBounds",
    "DecoyCounts",
    "Detections",
    "FiniteKeyInput",
    "FiniteKeyResult",
    "GllpParameters",
    "ParityQuery",
    "ParityReply",
    "ReconciliationResult",
    "SiftAnnouncement",
    "SiftReply",
    "SiftedKey",
    "VerificationError",
    "VerificationMessage",
    "alice_sift",
    "alice_verification",
    "amplify",
    "as_bits",
    "binary_entropy",
    "bob_announce",
    "bob_sift",
    "bob_verification",
    "chernoff_interval",
    "decoy_key_rate",
    "default_block_sizes",
    "key_rate",
    "mas_hash",
    "max_distance",
    "new_pa_seed",
    "new_seed",
    "optimal_mu",
    "pa_seed_length",
    "pack_bits",
    "privacy_amplification",
    "random_bits",
    "reconcile",
    "secret_key_length",
    "seed_length",
    "sift",
    "squash_clicks",
    "tag_bits_for",
    "toeplitz_hash",
    "toeplitz_hash_direct",
    "unpack_bits",
    "vacuum_weak_decoy_bounds",
    "verify_keys",
]
