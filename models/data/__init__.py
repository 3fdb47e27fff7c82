"""Market data in: file readers, manifests, validation, publication times and the canonical `Panel`.

Every loader ends in a `Panel`; nothing downstream reads raw files."""
