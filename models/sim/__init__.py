"""The built-in regime-switching market simulator with known true betas."""
