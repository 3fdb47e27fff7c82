"""How a universe is cut into blocks of assets (shared by the blocked feature paths).

Blocks are consecutive runs of the sorted symbols, so the one-shot row order (time, then
symbol) is recovered by interleaving blocks, and each block's job needs only its own assets'
series plus the shared benchmark and factor series (`block_panel`).
"""

from __future__ import annotations

from adaptive_beta.models.data.schema import Panel

# A block keeps its wide arrays (one (T, block) float64 per feature column), the estimators'
# intermediates and its long copy near _BLOCK_NUMBERS float64s (~400 MB): a few assets of 2 years
# of hourly bars, the whole panel of a daily or 8h dataset.
_BLOCK_NUMBERS = 5e7
_NUMBERS_PER_ASSET_ROW = 300  # ~120 wide columns + ~120 long + intermediates


def check_block_args(block_assets: int | None, workers: int, where: str) -> None:
    """ValueError naming the argument unless block_assets is None or >= 1 and workers >= 1."""
    if block_assets is not None and (isinstance(block_assets, bool) or not isinstance(block_assets, int)):
        raise ValueError(f"{where}: block_assets must be a whole number of assets, got {block_assets!r}")
    if block_assets is not None and block_assets < 1:
        raise ValueError(f"{where}: block_assets must be >= 1, got {block_assets!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"{where}: workers must be a whole number >= 1, got {workers!r}")


def default_block_assets(n_bars: int) -> int:
    """Assets per block that keep one block near _BLOCK_NUMBERS float64s (at least 1)."""
    return max(1, int(_BLOCK_NUMBERS // max(1, n_bars * _NUMBERS_PER_ASSET_ROW)))


def asset_blocks(symbols: list[str], block_assets: int | None, n_bars: int) -> list[list[str]]:
    """Consecutive runs of `symbols` (already sorted) of `block_assets` (default: by memory)."""
    size = block_assets or default_block_assets(n_bars)
    return [symbols[i : i + size] for i in range(0, len(symbols), size)]


def block_panel(panel: Panel, symbols: list[str]) -> Panel:
    """`panel.select(symbols)` without `meta` (the simulated truth, ~230 MB at universe scale,
    which no feature reads): what one block's job needs, and all that is pickled to a worker."""
    block = panel.select(symbols)
    block.meta = {}
    return block
