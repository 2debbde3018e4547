"""HP / Agilent / Keysight emulators."""
