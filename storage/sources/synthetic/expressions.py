"""The seven DFME classes as AU-like local deformations with their dynamics.

Each expression moves a few facial points (Gaussian-weighted local displacement) along a
direction, scaled by the clip's amplitude and by an envelope over time. Dynamics are in
*seconds*, as real facial movements are, not in fractions of the clip: a clip twice as
long holds the same movements in twice the frames.

The benchmark is *temporal by construction*, at several time scales:

- fear and surprise move the same points the same way, in short pulses (60-90 ms each):
  surprise once, fear twice (peaks 180-280 ms apart) — they differ only in the number of
  movements, and evenly spaced frames 50-90 ms apart (N = 8) often miss one of them;
- contempt and happiness share the same slow lip-corner pull; contempt adds a brief
  one-sided twitch (25-45 ms, 2-4 frames at 100 fps) of one lip corner. Evenly spaced
  frames are 20-42 ms apart at N = 16 on the benchmark's 32-64 frame clips, so they often
  step over it; only all frames always see it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from storage.sources.dfme import EMOTIONS as DFME_CLASSES  # DFME's seven classes, EmotionId 0..6

# Class frequencies of the benchmark (imbalanced, as MER data is).
CLASS_WEIGHTS = {
    "anger": 0.10, "contempt": 0.12, "disgust": 0.18, "fear": 0.14,
    "happiness": 0.16, "sadness": 0.10, "surprise": 0.20,
}

# pulse widths and spacing, seconds (full width of a raised-cosine pulse)
SINGLE_S = (0.20, 0.35)
DOUBLE_S = (0.06, 0.09)
DOUBLE_GAP_S = (0.18, 0.28)  # peak to peak
TWITCH_S = (0.025, 0.045)
TWITCH_GAIN = 1.5  # the twitch's largest displacement, relative to the clip's amplitude


@dataclass(frozen=True)
class Movement:
    point: str  # a name in face.POINTS
    direction: tuple[float, float]  # (dx, dy) in amplitude units; y grows downwards


@dataclass(frozen=True)
class Expression:
    name: str
    movements: tuple[Movement, ...]
    dynamics: str  # "single", "short" or "double": the envelope of ``movements``
    twitch: tuple[Movement, ...] = ()  # moved in one brief pulse (``TWITCH_S``) on top


def _m(point: str, dx: float, dy: float) -> Movement:
    return Movement(point, (dx, dy))


_BROWS_UP = (_m("brow_inner_l", 0.0, -1.0), _m("brow_inner_r", 0.0, -1.0),
             _m("brow_outer_l", 0.0, -0.8), _m("brow_outer_r", 0.0, -0.8),
             _m("lid_upper_l", 0.0, -0.5), _m("lid_upper_r", 0.0, -0.5))
_LIP_CORNERS_UP = (_m("mouth_corner_l", -0.6, -0.8), _m("mouth_corner_r", 0.6, -0.8))

EXPRESSIONS: dict[str, Expression] = {e.name: e for e in (
    # brow lowerer (AU4): brows down and together
    Expression("anger", (_m("brow_inner_l", 0.5, 0.8), _m("brow_inner_r", -0.5, 0.8),
                         _m("brow_outer_l", 0.0, 0.5), _m("brow_outer_r", 0.0, 0.5)), "single"),
    # lip corner puller (AU12) with a brief one-sided dimpler twitch (unilateral AU14)
    Expression("contempt", _LIP_CORNERS_UP, "single", twitch=(_m("mouth_corner_r", 1.0, 0.0),)),
    # nose wrinkler + upper lip raiser (AU9 + AU10)
    Expression("disgust", (_m("nose_bridge", 0.0, 0.6), _m("nose_wing_l", 0.0, -0.7),
                           _m("nose_wing_r", 0.0, -0.7), _m("lip_upper", 0.0, -0.8)), "single"),
    # brow raiser + upper lid raiser (AU1+2+5), twice: differs from surprise only in dynamics
    Expression("fear", _BROWS_UP, "double"),
    # lip corner puller (AU12)
    Expression("happiness", _LIP_CORNERS_UP, "single"),
    # inner brow raiser + lip corner depressor (AU1 + AU15)
    Expression("sadness", (_m("brow_inner_l", 0.2, -0.8), _m("brow_inner_r", -0.2, -0.8),
                           _m("mouth_corner_l", 0.0, 0.9), _m("mouth_corner_r", 0.0, 0.9)), "single"),
    # brow raiser + upper lid raiser (AU1+2+5), once and briefly
    Expression("surprise", _BROWS_UP, "short"),
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


def _between(rng: np.random.Generator, lo: float, hi: float) -> float:
    return rng.uniform(lo, max(lo, hi))  # hi < lo only by rounding, where the pulse fills its span


def _pulse(t: np.ndarray, centre: float, width: float) -> np.ndarray:
    return _bump(t, centre - width / 2, centre, centre + width / 2)


def motion_span(duration_s: float, rng: np.random.Generator) -> tuple[float, float]:
    """Where the motion starts and ends inside a clip of ``duration_s`` seconds: jittered
    (annotators' onset and offset are not exact), so no movement sits at a fixed frame."""
    return rng.uniform(0.0, 0.1) * duration_s, duration_s * (1.0 - rng.uniform(0.0, 0.1))


def envelope(dynamics: str, t_s: np.ndarray, rng: np.random.Generator, span: tuple[float, float]) -> np.ndarray:
    """Intensity in [0, 1] at times ``t_s`` (seconds from onset) within the motion ``span``.

    - ``single``: one pulse of 200-350 ms (at most the span);
    - ``short``: one pulse of 60-90 ms;
    - ``double``: two pulses of 60-90 ms, peaks 180-280 ms apart, with a return to
      neutral between them (shrunk together to fit a short span).
    """
    s0, s1 = span
    length = s1 - s0
    if dynamics == "single":
        w = min(rng.uniform(*SINGLE_S), length)
        c = _between(rng, s0 + w / 2, s1 - w / 2)
        return _pulse(t_s, c, w)
    if dynamics == "short":
        w = min(rng.uniform(*DOUBLE_S), length)
        return _pulse(t_s, _between(rng, s0 + w / 2, s1 - w / 2), w)
    if dynamics == "double":
        w1, w2, gap = rng.uniform(*DOUBLE_S), rng.uniform(*DOUBLE_S), rng.uniform(*DOUBLE_GAP_S)
        total = w1 / 2 + gap + w2 / 2
        k = min(1.0, length / total)  # a short span: the same shape, faster
        w1, w2, gap, total = w1 * k, w2 * k, gap * k, total * k
        first = s0 + w1 / 2 + _between(rng, 0.0, length - total)
        return _pulse(t_s, first, w1) + rng.uniform(0.75, 1.0) * _pulse(t_s, first + gap, w2)
    raise ValueError(f"unknown dynamics {dynamics!r}")


def twitch(t_s: np.ndarray, rng: np.random.Generator, span: tuple[float, float]) -> np.ndarray:
    """One brief pulse (25-45 ms) at a random instant of the motion ``span``."""
    s0, s1 = span
    w = min(rng.uniform(*TWITCH_S), s1 - s0)
    return _pulse(t_s, _between(rng, s0 + w / 2, s1 - w / 2), w)
