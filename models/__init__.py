"""Adaptive Beta: the beta models themselves (torch-free except `models.networks`).

Data schema and loaders, the feature pipeline, classical estimators, the ONNX-runtime
predictor and explainer live here.  Nothing in this package imports torch at module import
time except `models.networks`, so serving can use everything else without it.
"""
