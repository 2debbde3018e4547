"""Emulators of qhil's own instruments."""
