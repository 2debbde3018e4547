"""Santec emulators."""
