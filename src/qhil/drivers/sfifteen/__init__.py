"""S-Fifteen Instruments boards (USB virtual serial): SPDC source driver, SPD, TDC1."""
