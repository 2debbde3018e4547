"""ETSI GS QKD 014 key management entities: one KME per node serving its key store's keys.

``qhil kms serve NODE`` (server, mutual TLS), ``qhil kms init-ca DIR`` (a local test CA);
see docs/kms.md for the flow, the protocol between the two KMEs and the crash guarantees.
"""
