"""nnbisim.core: the data model every layer shares (networks, verdicts, errors, reports).

Imports nothing heavier than numpy, so the command line can use it before torch or onnx load.
"""
