"""The seven DFME classes as AU-like local deformations with their dynamics.

Each expression moves a few facial points (Gaussian-weighted local displacement) along a
direction, scaled by the clip's amplitude and by an envelope over time. The benchmark is
*temporal by construction*: surprise and fear move the same points the same way and differ
only in their dynamics (one peak against two), as do happiness and contempt (fast onset
against slow onset). A model that sees only a few frames cannot tell them apart reliably.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from storage.sources.dfme import EMOTIONS as DFME_CLASSES  # DFME's seven classes, EmotionId 0..6

# Class frequencies of the benchmark (imbalanced, as MER data is).
CLASS_WEIGHTS = {
    "anger": 0.10, "contempt": 0.08, "disgust": 0.22, "fear": 0.12,
    "happiness": 0.18, "sadness": 0.12, "surprise": 0.18,
}


@dataclass(frozen=True)
class Movement:
    point: str  # a name in face.POINTS
    direction: tuple[float, float]  # (dx, dy) in amplitude units; y grows downwards


@dataclass(frozen=True)
class Expression:
    name: str
    movements: tuple[Movement, ...]
    dynamics: str  # a key of ENVELOPES


def _m(point: str, dx: float, dy: float) -> Movement:
    return Movement(point, (dx, dy))


EXPRESSIONS: dict[str, Expression] = {e.name: e for e in (
    # brow lowerer (AU4): brows down and together
    Expression("anger", (_m("brow_inner_l", 0.5, 0.8), _m("brow_inner_r", -0.5, 0.8),
                         _m("brow_outer_l", 0.0, 0.5), _m("brow_outer_r", 0.0, 0.5)), "single"),
    # lip corner puller (AU12), slow onset: differs from happiness only in its dynamics
    Expression("contempt", (_m("mouth_corner_l", -0.6, -0.8), _m("mouth_corner_r", 0.6, -0.8)), "slow_onset"),
    # nose wrinkler + upper lip raiser (AU9 + AU10)
    Expression("disgust", (_m("nose_bridge", 0.0, 0.6), _m("nose_wing_l", 0.0, -0.7),
                           _m("nose_wing_r", 0.0, -0.7), _m("lip_upper", 0.0, -0.8)), "single"),
    # brow raiser + upper lid raiser (AU1+2+5), twice: differs from surprise only in dynamics
    Expression("fear", (_m("brow_inner_l", 0.0, -1.0), _m("brow_inner_r", 0.0, -1.0),
                        _m("brow_outer_l", 0.0, -0.8), _m("brow_outer_r", 0.0, -0.8),
                        _m("lid_upper_l", 0.0, -0.5), _m("lid_upper_r", 0.0, -0.5)), "double"),
    # lip corner puller (AU12), fast onset
    Expression("happiness", (_m("mouth_corner_l", -0.6, -0.8), _m("mouth_corner_r", 0.6, -0.8)), "fast_onset"),
    # inner brow raiser + lip corner depressor (AU1 + AU15)
    Expression("sadness", (_m("brow_inner_l", 0.2, -0.8), _m("brow_inner_r", -0.2, -0.8),
                           _m("mouth_corner_l", 0.0, 0.9), _m("mouth_corner_r", 0.0, 0.9)), "single"),
    # brow raiser + upper lid raiser (AU1+2+5), once
    Expression("surprise", (_m("brow_inner_l", 0.0, -1.0), _m("brow_inner_r", 0.0, -1.0),
                            _m("brow_outer_l", 0.0, -0.8), _m("brow_outer_r", 0.0, -0.8),
                            _m("lid_upper_l", 0.0, -0.5), _m("lid_upper_r", 0.0, -0.5)), "single"),
)}
assert tuple(EXPRESSIONS) == DFME_CLASSES


def _bump(t: np.ndarray, start: float, peak: float, end: float) -> np.ndarray:
    """0 before ``start``, raised-cosine rise to 1 at ``peak``, fall to 0 at ``end``."""
    out = np.zeros_like(t)
    rise = (t >= start) & (t < peak)
    fall = (t >= peak) & (t <= end)
    out[rise] = 0.5 - 0.5 * np.cos(np.pi * (t[rise] - start) / max(peak - start, 1e-6))
    out[fall] = 0.5 + 0.5 * np.cos(np.pi * (t[fall] - peak) / max(end - peak, 1e-6))
    return out


def envelope(dynamics: str, t: np.ndarray, rng: np.random.Generator,
             pulse: tuple[float, float] = (0.15, 0.22)) -> np.ndarray:
    """Intensity in [0, 1] over normalised clip time ``t`` in [0, 1] (onset -> offset).

    The motion starts and ends at jittered instants inside the clip (annotators' onset and
    offset are not exact), so the apex does not sit at a fixed sampled frame.

    - ``single``: one pulse of 30-60 % of the motion span;
    - ``fast_onset`` / ``slow_onset``: one pulse over the whole span whose apex comes at
      8-20 % / 80-92 % of it;
    - ``double``: two short pulses (``pulse`` = 15-22 % of the span each by default) with a
      return to neutral between them — sparse sampling sees them as one, or misses them.
    """
    s0, s1 = rng.uniform(0.0, 0.15), rng.uniform(0.85, 1.0)
    span = s1 - s0
    if dynamics == "single":
        w = span * rng.uniform(0.3, 0.6)
        c = rng.uniform(s0 + w / 2, s1 - w / 2)
        return _bump(t, c - w / 2, c, c + w / 2)
    if dynamics == "fast_onset":
        return _bump(t, s0, s0 + span * rng.uniform(0.08, 0.2), s1)
    if dynamics == "slow_onset":
        return _bump(t, s0, s0 + span * rng.uniform(0.8, 0.92), s1)
    if dynamics == "double":
        out = np.zeros_like(t)
        for lo, hi, gain in ((0.15, 0.35, 1.0), (0.65, 0.85, rng.uniform(0.75, 1.0))):
            w = span * rng.uniform(*pulse)
            c = s0 + span * rng.uniform(lo, hi)
            out += gain * _bump(t, c - w / 2, c, c + w / 2)
        return out
    raise ValueError(f"unknown dynamics {dynamics!r}")
