"""Adaptive Beta: the beta models themselves (torch-free except `adaptive_beta.models.networks`).

Data schema and loaders, the feature pipeline, classical estimators, the ONNX-runtime
predictor and explainer live here.  Nothing in this package imports torch at module import
time except `adaptive_beta.models.networks`, so serving can use everything else without it.
"""
