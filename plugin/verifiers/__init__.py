"""nnbisim.verifiers: the verifier plug-ins (own engine, Marabou, VNN-COMP tools) by name."""
