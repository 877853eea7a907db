"""nnbisim.adapters: the edges to other formats and tools (ONNX, merge, Marabou, ...)."""
