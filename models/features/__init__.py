"""Causal features, forward targets and fixed-geometry windows: the same code in training and serving."""
