"""The train -> serve contract on disk: the bundle folder, its ONNX Runtime predictor, model inputs
from a panel, exact group Shapley explanations and where a bundle lives (path or registry URI)."""
