"""Adaptive Beta serving side: BentoML service on ONNX Runtime, auth, the audit log and the
compliance page.  Nothing here may import torch."""
