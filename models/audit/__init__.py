"""The audit core: hash chain, storage (SQLite / PostgreSQL), the append-only log and exports.

Torch-free and BentoML-free, so that the service writes it and training, monitoring and the
`abeta audit` commands read it without importing the serving side."""
