"""Monitoring a deployed bundle: feature drift (PSI), forecast vs realised beta, beta-shift runs."""
