"""nnbisim.tasks: what users ask for (eps, assured compression, repair, spec files)."""
