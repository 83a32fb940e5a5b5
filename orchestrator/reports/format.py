"""How the tables write numbers: scores in percent, mean ± std, p-values, intervals."""

from __future__ import annotations

import math


def pm(mean: float, std: float, scale: float = 100.0) -> str:
    """``mean ± std`` in percent (``n/a`` for the std of one value; ``–`` for no value)."""
    if math.isnan(mean):
        return "–"
    s = "n/a" if math.isnan(std) else f"{std * scale:.2f}"
    return f"{mean * scale:.2f} ± {s}"


def pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{x * 100:.2f}"


def p_text(p: float) -> str:
    return "–" if math.isnan(p) else (f"{p:.2g}" if p >= 1e-4 else "< 0.0001")


def pp_ci(ci: tuple[float, float]) -> str:
    """A confidence interval of a difference, in percentage points."""
    lo, hi = ci
    return "n/a" if math.isnan(lo) else f"{lo * 100:+.2f}, {hi * 100:+.2f}"
