"""nnbisim.specs: input sets, output constraints, VNN-LIB read/write, discrepancy properties."""
