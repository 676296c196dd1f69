"""Where one VM fits best now, with the others where they are: on a single cell
(:func:`best_single`), or over the fewest, closest cells (:func:`best_spread`)."""

from __future__ import annotations

from collections.abc import Iterator

from balancing.planner.options import Option, SearchVm, even_option, single_option
from balancing.planner.state import SearchState


def single_fits(
    state: SearchState, v: SearchVm, exclude: int | None = None
) -> Iterator[tuple[int, Option, dict[int, tuple[int, ...]]]]:
    """Every cell (but *exclude*) where *v* fits alone now: (cell, option, core sizes)."""
    for c in state.m.cpu_cells:
        if c == exclude:
            continue
        opt = single_option(state.m, v, c)
        if opt is None:
            continue
        sizes = state.fits(v, opt)
        if sizes is not None:
            yield c, opt, sizes


def best_single(
    state: SearchState, v: SearchVm, exclude: int | None = None
) -> tuple[Option, dict[int, tuple[int, ...]]] | None:
    best = None
    for c, opt, sizes in single_fits(state, v, exclude):
        key = (state.cost(v, opt, sizes), c)
        if best is None or key < best[0]:
            best = (key, opt, sizes)
    return None if best is None else (best[1], best[2])


def best_spread(
    state: SearchState, v: SearchVm, max_cells: int | None = None
) -> tuple[Option, dict[int, tuple[int, ...]]] | None:
    """Fewest cells first, then the closest (lowest remote cost), then the cost; an even
    split first, in proportion to the free room when no even split fits."""
    top = len(state.spread_cells) if max_cells is None else max_cells
    for k in range(2, top + 1):
        for weighted in (False, True):
            best = None
            for cells in state.cell_sets(k):
                opt = (
                    state.weighted_option(v, cells) if weighted else even_option(state.m, v, cells)
                )
                if opt is None or len(opt.cells) != k:
                    continue
                sizes = state.fits(v, opt)
                if sizes is None:
                    continue
                key = (round(state.r_coef * opt.remote, 9), state.cost(v, opt, sizes), cells)
                if best is None or key < best[0]:
                    best = (key, opt, sizes)
            if best is not None:
                return best[1], best[2]
    return None
