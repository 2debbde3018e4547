"""Keysight / Agilent instruments."""
