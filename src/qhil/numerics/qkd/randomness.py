"""The parties' secret randomness: a numpy Generator on a cryptographic bit stream.

Alice's BB84 bits, bases and intensities, and BBM92's random bits for squashed
double clicks, ARE key material: whoever can predict the generator knows the key.
numpy's own bit generators (PCG64, the default; Philox; SFC64; MT19937) are
statistical generators, not cryptographic ones: PCG64's state can be recovered
from its output (Bouillaguet, Martinez, Sauvage, "Practical seed-recovery for the
PCG pseudo-random number generator", IACR ToSC 2020(3)), and in BB84 Eve sees
plenty of it (bases, the revealed alignment subset, the disclosed X-basis bits).
So the parties draw from AES-128 in counter mode keyed with 128 bits from the
operating system's CSPRNG (the construction of NIST SP 800-90A's CTR_DRBG, without
its reseeding): ``randomgen.AESCounter``, which uses AES-NI where the CPU has it
and is then as fast as PCG64 (~3 ns per double here), behind numpy's ``Generator``
interface so every draw (``random``, ``integers``, ``choice``) works unchanged.
A lab with a quantum RNG would put it here.
"""

from __future__ import annotations

import secrets

import numpy as np
from randomgen import AESCounter

#: AES-128 key length in bits.
KEY_BITS = 128


def secure_generator() -> np.random.Generator:
    """A numpy generator on AES-128-CTR, keyed with ``KEY_BITS`` bits from the OS CSPRNG."""
    return np.random.Generator(AESCounter(key=secrets.randbits(KEY_BITS)))
