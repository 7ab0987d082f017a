"""Server-rendered SVG bar charts for the DPO console (no JavaScript; a data table goes beside).

Geometry is computed here and drawn by templates/consent/dpo/_chart.html with presentation
attributes only (no inline style), so the strict CSP holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _

# Blue, orange and near-black: distinct in hue and lightness (colour-blind safe), each at
# least 3:1 against white (WCAG 1.4.11).
SERIES = (
    ("grants", _("Consentements donnés"), "#0b4f8a"),
    ("refusals", _("Refus"), "#b35c00"),
    ("withdrawals", _("Retraits"), "#1b1b1f"),
)
WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 12, 44


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    fill: str
    label: str


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    bars: list[Bar] = field(default_factory=list)
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, int]] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    axis_y: float = HEIGHT - BOTTOM
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT
    max_value: int = 0


def _nice_step(peak: int) -> int:
    """The smallest of 1, 2, 5 × 10^k such that four steps reach `peak`."""
    raw = max(1, peak) / 4
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    for multiple in (1, 2, 5, 10):
        if multiple * magnitude >= raw:
            return int(multiple * magnitude)
    return int(10 * magnitude)


def bucket_label(start: date, bucket: str) -> str:
    if bucket == "month":
        return date_format(start, "M Y")
    return date_format(start, "j M")


def bar_chart(buckets: list[dict[str, Any]], *, bucket: str) -> Chart:
    chart = Chart(legend=[(str(label), colour) for _key, label, colour in SERIES])
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    count = max(1, len(buckets))
    peak = max([row[key] for row in buckets for key, _label, _colour in SERIES] or [0])
    step = _nice_step(peak)
    top = 4 * step
    chart.max_value = peak
    for index in range(5):
        value = index * step
        chart.y_ticks.append((round(TOP + plot_h - plot_h * value / top, 2), value))
    group = plot_w / count
    bar_w = group * 0.8 / len(SERIES)
    every = max(1, math.ceil(count / 10))
    for index, row in enumerate(buckets):
        label = bucket_label(row["start"], bucket)
        x0 = LEFT + index * group + group * 0.1
        for offset, (key, series_label, colour) in enumerate(SERIES):
            value = row[key]
            height = plot_h * value / top
            chart.bars.append(
                Bar(
                    x=round(x0 + offset * bar_w, 2),
                    y=round(TOP + plot_h - height, 2),
                    width=round(max(bar_w - 1, 1), 2),
                    height=round(height, 2),
                    fill=colour,
                    label=f"{label} – {series_label} : {value}",
                )
            )
        if index % every == 0:
            chart.x_labels.append((round(LEFT + index * group + group / 2, 2), label))
    return chart
