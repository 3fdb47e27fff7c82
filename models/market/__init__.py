"""The market-data store of the stateful service: bars per (series, timestamp) in SQLite or
PostgreSQL (`store.py`), their types and errors (`bars.py`) and reads as model input (`window.py`)."""
