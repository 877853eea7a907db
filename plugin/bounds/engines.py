"""The bound engines of eps by name (importable without torch, for the command line).

``differential`` bounds the difference of corresponding neurons as its own variable (same layer
sizes only); ``zonotope`` does too, as differential zonotopes (cheaper per box, looser on wide
boxes: :mod:`nnbisim.bounds.diffzono`); ``crown`` is CROWN on the merged network;
``separate`` bounds each network by CROWN and subtracts (a baseline); ``interval`` propagates
intervals through the merged network.
"""

ENGINES = ("differential", "zonotope", "crown", "separate", "interval")
ENGINE_CHOICES = ("auto", *ENGINES)  # auto: differential where the layer sizes agree
