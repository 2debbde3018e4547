"""HP / Agilent / Keysight instruments."""
