"""nnbisim.vnncomp: VNN-COMP formats, nnbisim as a VNN-COMP tool, benchmark writing."""
