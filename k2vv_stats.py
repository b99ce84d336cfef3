"""k2vv_stats — how sure a summary is: Wilson intervals, a bootstrap of F1, latency percentiles.

Pure and seeded: the same answers give the same intervals on every machine (DESIGN §8). Imports
nothing from k2vv.
"""
from __future__ import annotations

import math
import random
from collections import Counter

BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 2000, 20250925  # seed: K2VV's first release date
Z95 = 1.959963984540054


def wilson(successes: int, total: int, z: float = Z95) -> list | None:
    """Wilson score interval of a proportion; None when there is nothing to estimate."""
    if total <= 0:
        return None
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return [round6(max(0.0, centre - half)), round6(min(1.0, centre + half))]


def binomial(rng: random.Random, n: int, p: float) -> int:
    """A Binomial(n, p) draw in O(1) expected time: CPython 3.12's `random.binomialvariate`
    (geometric method for small n·p, BTRS otherwise; PSF licence), here so 3.10 and 3.11 can
    bootstrap 100k cases without drawing 100k numbers per resample."""
    if p <= 0.0 or n <= 0:
        return 0
    if p >= 1.0:
        return n
    if p > 0.5:
        return n - binomial(rng, n, 1.0 - p)
    if n * p < 10.0:
        x = y = 0
        c = math.log(1.0 - p)
        while True:
            y += math.floor(math.log(1.0 - rng.random()) / c) + 1
            if y > n:
                return x
            x += 1
    spq = math.sqrt(n * p * (1.0 - p))
    b = 1.15 + 2.53 * spq
    a = -0.0873 + 0.0248 * b + 0.01 * p
    c = n * p + 0.5
    vr = 0.92 - 4.2 / b
    alpha = (2.83 + 5.1 / b) * spq
    lpq = math.log(p / (1.0 - p))
    m = math.floor((n + 1) * p)
    h = math.lgamma(m + 1) + math.lgamma(n - m + 1)
    while True:
        u = rng.random() - 0.5
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + c)
        if k < 0 or k > n:
            continue
        v = rng.random()
        if us >= 0.07 and v <= vr:
            return k
        v *= alpha / (a / (us * us) + b)
        if v > 0 and math.log(v) <= h - math.lgamma(k + 1) - math.lgamma(n - k + 1) + (k - m) * lpq:
            return k


def multinomial(rng: random.Random, n: int, weights: list) -> list:
    """Counts of n draws over categories with the given weights, by conditional binomials."""
    counts, left, mass = [], n, float(sum(weights))
    for w in weights[:-1]:
        k = binomial(rng, left, w / mass) if mass > 0 else 0
        counts.append(k)
        left -= k
        mass -= w
    counts.append(left)
    return counts


def f1_of(tp: int, fp: int, fn: int) -> float | None:
    """Harmonic mean of precision and recall; None when there is no positive on either side."""
    return 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else None


def bootstrap_f1(per_case: list, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> list | None:
    """95% percentile interval of F1 when whole cases are resampled. `per_case` holds one
    (tp, fp, fn) tuple per case (several trials add up), or a Counter of them. Cases with equal
    tuples are interchangeable, so one resample is a multinomial draw over the distinct tuples."""
    groups = per_case if isinstance(per_case, Counter) else Counter(per_case)
    kinds = sorted(groups)  # not insertion order: the same cases give the same interval however they were folded
    weights = [groups[kind] for kind in kinds]
    cases = sum(weights)
    if not cases:
        return None
    rng = random.Random(seed)
    scores = []
    for _ in range(resamples):
        counts = multinomial(rng, cases, weights)
        tp = sum(c * k[0] for c, k in zip(counts, kinds))
        fp = sum(c * k[1] for c, k in zip(counts, kinds))
        fn = sum(c * k[2] for c, k in zip(counts, kinds))
        f1 = f1_of(tp, fp, fn)
        if f1 is not None:
            scores.append(f1)
    if not scores:
        return None
    scores.sort()
    lo = scores[int(0.025 * (len(scores) - 1))]
    hi = scores[int(math.ceil(0.975 * (len(scores) - 1)))]
    return [round6(lo), round6(hi)]


def percentile(sorted_values: list, q: float):
    """Nearest-rank percentile of already sorted values; None for none."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def round6(x):
    return None if x is None else round(x, 6)
