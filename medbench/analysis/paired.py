"""Paired replicates: run ``r`` of the baseline against run ``r`` of the current side, when they ran interleaved.

A shared machine drifts: two sweeps started a minute apart can differ by 30% with nothing in the load average or
in any counter a process can read. Replicates of one side measure the spread *within* that side, not the shift
*between* two sides run one after the other, so an unpaired interval from two separate sweeps is too narrow and
cries wolf. Interleaving the sides — baseline run 0, current run 0, baseline run 1, current run 1, … (the
README's CI workflow, and every sweep with ``repeat`` first) — puts each pair in the same minute of the machine's
life: the ratio of a pair cancels what drifts slower than one pair, and the pairs' spread measures what does not.

* ``pairs`` — the runs matched by replicate index (``repeat``), both clean;
* ``interleaved`` — whether the two sides' runs alternated in time (their time spans overlap);
* ``paired_delta_pct`` — Δ% of the current side from the pairs' log ratios: their 20% trimmed mean with its
  t interval (Tukey–McLaughlin standard error s_w / (0.6 √n) from the winsorized variance, n − 2g − 1 degrees of
  freedom, g = ⌊0.2 n⌋ pairs trimmed at each end: scipy's ``mstats.trimmed_mean_ci``, Wilcox's ``trimci``). With
  fewer than 5 pairs nothing is trimmed and it is Student's paired t interval. Why trimmed: on a shared host a
  process now and then runs 30% slow from start to end with nothing in its own samples or any counter to show it
  (measured: about one run in 50 with one thread, more with two); one such pair in ten moves a mean by 3% and
  triples its standard deviation, so a real 10% slowdown goes unseen. Trimming is symmetric and fixed in advance —
  no run is judged an outlier by its value — and costs little when the pairs are normal (docs/statistics.md has
  the measured rates).

Pure: ``Run`` objects in, an ``Interval`` out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from medbench.analysis.intervals import CONFIDENCE, Interval
from medbench.analysis.replicates import Run

TRIM = 0.2  # proportion of the pairs trimmed at each end (Yuen); none below 5 pairs
METHOD = "paired runs: 20% trimmed mean log ratio, trimmed t interval"


def pairs(a: Sequence[Run], b: Sequence[Run], statistic: str = "median") -> list[tuple[float, float]]:
    """(baseline, current) values of the runs with the same replicate index, both clean; [] when not matchable.

    Matching needs every run of both sides to carry a replicate index, unique within its side."""
    def by_index(runs: Sequence[Run]) -> dict[int, Run] | None:
        index = [r.repeat for r in runs]
        if not runs or any(i is None for i in index) or len(set(index)) != len(index):
            return None
        return {int(r.repeat): r for r in runs}  # type: ignore[arg-type]

    ia, ib = by_index(a), by_index(b)
    if ia is None or ib is None:
        return []
    out = []
    for i in sorted(ia.keys() & ib.keys()):
        ra, rb = ia[i], ib[i]
        if not (ra.clean and rb.clean):
            continue
        va, vb = _value(ra, statistic), _value(rb, statistic)
        if va is not None and vb is not None and va > 0 and vb > 0:
            out.append((va, vb))
    return out


def _value(run: Run, statistic: str) -> float | None:
    if statistic == "median":
        return run.p50_ms
    if statistic == "mean":
        return run.values.get("mean_ms") or (float(np.mean(run.samples_ms)) if run.samples_ms else None)
    return None


def interleaved(a: Sequence[Run], b: Sequence[Run]) -> bool:
    """True when both sides' runs carry start times and the sides' time spans overlap (they alternated)."""
    ta = [r.started for r in a if r.started is not None]
    tb = [r.started for r in b if r.started is not None]
    if len(ta) != len(a) or len(tb) != len(b) or len(ta) < 2 or len(tb) < 2:
        return False
    return min(ta) < max(tb) and min(tb) < max(ta)


def paired_delta_pct(values: Sequence[tuple[float, float]], confidence: float = CONFIDENCE,
                     trim: float = TRIM) -> Interval:
    """Δ% (current / baseline − 1) from matched pairs: the 20% trimmed mean log ratio with its trimmed t interval."""
    if len(values) < 2:
        raise ValueError("a paired interval needs at least 2 pairs")
    d = np.sort(np.log(np.asarray([vb for _, vb in values])) - np.log(np.asarray([va for va, _ in values])))
    n = d.size
    g = int(trim * n)  # trimmed at each end (floor, as scipy.stats.trim_mean)
    h = n - 2 * g
    centre = float(d[g:n - g].mean())
    winsorized = np.clip(d, d[g], d[n - 1 - g])
    cut = trim if g else 0.0  # nothing trimmed: Student's t
    se = float(winsorized.std(ddof=1)) / ((1.0 - 2.0 * cut) * math.sqrt(n))  # Tukey–McLaughlin, as Wilcox's trimci
    half = float(stats.t.ppf(0.5 + confidence / 2.0, h - 1)) * se

    def pct(v: float) -> float:
        return 100.0 * math.expm1(v)

    return Interval(pct(centre), pct(centre - half), pct(centre + half), confidence, METHOD)
