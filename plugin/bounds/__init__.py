"""nnbisim.bounds: the sound bound engines (interval, CROWN, differential, quantized)."""
