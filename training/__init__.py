"""Adaptive Beta training side: splits, Lightning modules, MLflow tracking/registry, ONNX export,
evaluation and the `abeta` CLI."""
