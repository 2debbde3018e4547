"""Santec instruments."""
