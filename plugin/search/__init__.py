"""nnbisim.search: branch and bound, witnesses and bisection, built on the bound engines."""
