"""What a desk does with betas: hedge overlays, overlay backtests and stress scenarios."""
