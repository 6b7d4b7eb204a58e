"""An SVG chart of a database's last backups: dump size as bars, duration as a line.

Rendered on the server as a string (no JavaScript): the backups page inlines it. A backup
much smaller than the ones before it (``drops``) is drawn red with its fall in percent: a
table emptied by mistake, an exclusion that grew, a dump cut short. Failed runs are marked
with a cross on the baseline.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from html import escape

from opskit.monitoring.runlog import Dump
from opskit.progress import human

DROP_FACTOR = 0.5  # smaller than half the median of the runs before it
DROP_WINDOW = 7


def drops(
    sizes: Sequence[int], window: int = DROP_WINDOW, factor: float = DROP_FACTOR
) -> list[bool]:
    """For each size, whether it is a sudden drop against the good runs before it."""
    flags = []
    for i, size in enumerate(sizes):
        before = [s for s in sizes[max(0, i - window) : i] if s > 0]
        flags.append(size > 0 and bool(before) and size < factor * statistics.median(before))
    return flags


def fall(sizes: Sequence[int], i: int, window: int = DROP_WINDOW) -> float:
    """How much smaller run ``i`` is than the median of the good runs before it (0..1)."""
    before = [s for s in sizes[max(0, i - window) : i] if s > 0]
    return 1 - sizes[i] / statistics.median(before) if before else 0.0


def _seconds(s: float) -> str:
    return f"{s:.2f} s" if s < 10 else f"{s:.0f} s"


def render(points: Sequence[Dump], title: str, width: int = 760, height: int = 240) -> str:
    """The chart as an ``<svg>`` element (empty-state text when there are no runs)."""
    left, right, top, bottom = 64, 56, 24, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="opskit-chart" role="img"'
        f' width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        f' font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
    ]
    if not points:
        out.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#666">'
            "no backups in the log yet</text></svg>"
        )
        return "".join(out)
    sizes = [p.bytes for p in points]
    durations = [p.duration for p in points]
    flagged = drops(sizes)
    top_size = max(max(sizes), 1)
    top_time = max(max(durations), 0.001)
    slot = plot_w / len(points)
    bar_w = max(1.0, min(24.0, slot * 0.7))
    base = top + plot_h

    for frac in (0, 0.5, 1):  # grid lines with the size on the left, the time on the right
        y = base - frac * plot_h
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}"'
            ' stroke="#ddd" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#417690">'
            f"{escape(human(frac * top_size))}</text>"
            f'<text x="{left + plot_w + 6}" y="{y + 4:.1f}" fill="#c26a00">'
            f"{escape(_seconds(frac * top_time))}</text>"
        )
    line = []
    for i, p in enumerate(points):
        cx = left + slot * (i + 0.5)
        tip = f"{p.timestamp[:16].replace('T', ' ')}: {human(p.bytes)}, {_seconds(p.duration)}"
        if p.failed:
            out.append(
                f'<g class="failed"><title>{escape(tip)}, failed</title>'
                f'<path d="M{cx - 4:.1f},{base - 8} l8,8 m0,-8 l-8,8" stroke="#ba2121"'
                ' stroke-width="2"/></g>'
            )
            continue
        h = p.bytes / top_size * plot_h
        color = "#ba2121" if flagged[i] else "#79aec8"
        kind = "bar drop" if flagged[i] else "bar"
        if flagged[i]:
            tip += f", {fall(sizes, i):.0%} smaller than the runs before"
        out.append(
            f'<rect class="{kind}" x="{cx - bar_w / 2:.1f}" y="{base - h:.1f}"'
            f' width="{bar_w:.1f}" height="{h:.1f}" fill="{color}">'
            f"<title>{escape(tip)}</title></rect>"
        )
        if flagged[i]:
            out.append(
                f'<text class="drop-label" x="{cx:.1f}" y="{base - h - 4:.1f}"'
                f' text-anchor="middle" fill="#ba2121" font-weight="bold">'
                f"&#8722;{fall(sizes, i):.0%}</text>"
            )
        line.append(f"{cx:.1f},{base - p.duration / top_time * plot_h:.1f}")
    if line:
        out.append(
            f'<polyline class="duration" points="{" ".join(line)}" fill="none"'
            ' stroke="#c26a00" stroke-width="2"/>'
        )
        out += [
            f'<circle cx="{pt.split(",")[0]}" cy="{pt.split(",")[1]}" r="2.5" fill="#c26a00"/>'
            for pt in line
        ]
    out.append(
        f'<text x="{left}" y="{height - 10}" fill="#666">{len(points)} runs, oldest left'
        "</text>"
        f'<rect x="{left + plot_w - 190}" y="{height - 19}" width="10" height="10"'
        ' fill="#79aec8"/>'
        f'<text x="{left + plot_w - 176}" y="{height - 10}">dump size</text>'
        f'<line x1="{left + plot_w - 110}" y1="{height - 14}" x2="{left + plot_w - 96}"'
        f' y2="{height - 14}" stroke="#c26a00" stroke-width="2"/>'
        f'<text x="{left + plot_w - 90}" y="{height - 10}">duration</text>'
        "</svg>"
    )
    return "".join(out)
