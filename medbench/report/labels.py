"""Point labels that do not overlap: each label tries a few offsets around its point and keeps the first whose box
(measured by the renderer, not guessed) overlaps no label placed before it and stays inside the axes.

Deterministic and dependency-free (no adjustText): variants with nearly the same parameters and latency (eca and
baseline differ by 13 parameters) get their labels above / below / beside each other instead of on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# (dx, dy) in points and the horizontal alignment: right of the point first, then around it, then further out.
_NEAR = [(6, 4, "left"), (6, -11, "left"), (-6, 4, "right"), (-6, -11, "right"), (0, 9, "center"),
         (0, -16, "center")]
_FAR = [(dx * k, dy * k, ha) for k in (2, 3, 4) for dx, dy, ha in _NEAR]


def place_labels(ax: Any, xs: Sequence[float], ys: Sequence[float], texts: Sequence[str],
                 fontsize: float = 8, color: str | None = None) -> list[Any]:
    """Annotate each ``(x, y)`` with its text without overlaps (as far as the candidates allow); returns the labels.

    Call after the figure's layout is final (``fig.tight_layout()``): the check is in display coordinates.
    """
    fig = ax.figure
    ax.autoscale_view()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    from matplotlib.transforms import Bbox

    # Labels must not cover the points (a few pixels around each) or the legend either.
    centers = ax.transData.transform(np.column_stack([np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)]))
    placed: list[Any] = [Bbox.from_extents(cx - 3, cy - 3, cx + 3, cy + 3) for cx, cy in centers]
    if ax.get_legend() is not None:
        placed.append(ax.get_legend().get_window_extent(renderer))
    labels = []
    order = sorted(range(len(texts)), key=lambda i: (-float(ys[i]), float(xs[i])))  # top to bottom
    for i in order:
        label = None
        for dx, dy, ha in [*_NEAR, *_FAR]:
            if label is not None:
                label.remove()
            label = ax.annotate(str(texts[i]), (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points",
                                ha=ha, fontsize=fontsize, color=color,
                                arrowprops=None if abs(dx) <= 6 else {"arrowstyle": "-", "lw": 0.5, "color": "0.5"})
            box = label.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                break
        placed.append(label.get_window_extent(renderer))
        labels.append(label)
    return labels


def overlapping(labels: Sequence[Any], renderer: Any) -> list[tuple[str, str]]:
    """Pairs of labels whose boxes overlap (for checks and tests)."""
    boxes = [(lab.get_text(), lab.get_window_extent(renderer)) for lab in labels]
    return [(a, b) for k, (a, ba) in enumerate(boxes) for b, bb in boxes[k + 1:] if ba.overlaps(bb)]
