"""S-Fifteen Instruments emulators: SPDC source driver, SPD, TDC1."""
