"""An SVG chart of a database's last backups: dump size as bars, duration as a line.

Rendered on the server as a string (no JavaScript): the backups page inlines it. A backup
much smaller than the ones before it (``drops``) is drawn red with its fall in percent: a
table emptied by mistake, an exclusion that grew, a dump cut short. Failed runs are marked
with a cross on the baseline.
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class _Frame:
    """Where the plot sits in the SVG and what its full height stands for."""

    left: int
    top: int
    plot_w: int
    plot_h: int
    height: int
    slot: float
    bar_w: float
    top_size: int
    top_time: float

    @property
    def base(self) -> float:
        return self.top + self.plot_h


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
    slot = plot_w / len(points)
    frame = _Frame(
        left=left,
        top=top,
        plot_w=plot_w,
        plot_h=plot_h,
        height=height,
        slot=slot,
        bar_w=max(1.0, min(24.0, slot * 0.7)),
        top_size=max(max(sizes), 1),
        top_time=max(max(p.duration for p in points), 0.001),
    )
    out += _grid(frame)
    line = _runs(frame, points, sizes, out)
    out += _duration_line(line)
    out.append(_legend(frame, len(points)))
    return "".join(out)


def _grid(f: _Frame) -> list[str]:
    """Grid lines with the size on the left, the time on the right."""
    out = []
    for frac in (0, 0.5, 1):
        y = f.base - frac * f.plot_h
        out.append(
            f'<line x1="{f.left}" y1="{y:.1f}" x2="{f.left + f.plot_w}" y2="{y:.1f}"'
            ' stroke="#ddd" stroke-width="1"/>'
            f'<text x="{f.left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#417690">'
            f"{escape(human(frac * f.top_size))}</text>"
            f'<text x="{f.left + f.plot_w + 6}" y="{y + 4:.1f}" fill="#c26a00">'
            f"{escape(_seconds(frac * f.top_time))}</text>"
        )
    return out


def _runs(f: _Frame, points: Sequence[Dump], sizes: list[int], out: list[str]) -> list[str]:
    """Append each run (a bar, a red bar with its fall, or a failure's cross) to ``out``;
    return the points of the duration line."""
    flagged = drops(sizes)
    line = []
    for i, p in enumerate(points):
        cx = f.left + f.slot * (i + 0.5)
        tip = f"{p.timestamp[:16].replace('T', ' ')}: {human(p.bytes)}, {_seconds(p.duration)}"
        if p.failed:
            out.append(
                f'<g class="failed"><title>{escape(tip)}, failed</title>'
                f'<path d="M{cx - 4:.1f},{f.base - 8} l8,8 m0,-8 l-8,8" stroke="#ba2121"'
                ' stroke-width="2"/></g>'
            )
            continue
        out += _bar(f, cx, p.bytes, tip, fall(sizes, i) if flagged[i] else None)
        line.append(f"{cx:.1f},{f.base - p.duration / f.top_time * f.plot_h:.1f}")
    return line


def _bar(f: _Frame, cx: float, size: int, tip: str, fallen: float | None) -> list[str]:
    """A run's bar; a sudden drop (``fallen``: by how much) is red and labelled."""
    h = size / f.top_size * f.plot_h
    color = "#79aec8" if fallen is None else "#ba2121"
    kind = "bar" if fallen is None else "bar drop"
    if fallen is not None:
        tip += f", {fallen:.0%} smaller than the runs before"
    out = [
        f'<rect class="{kind}" x="{cx - f.bar_w / 2:.1f}" y="{f.base - h:.1f}"'
        f' width="{f.bar_w:.1f}" height="{h:.1f}" fill="{color}">'
        f"<title>{escape(tip)}</title></rect>"
    ]
    if fallen is not None:
        out.append(
            f'<text class="drop-label" x="{cx:.1f}" y="{f.base - h - 4:.1f}"'
            f' text-anchor="middle" fill="#ba2121" font-weight="bold">'
            f"&#8722;{fallen:.0%}</text>"
        )
    return out


def _duration_line(line: list[str]) -> list[str]:
    """The durations as a line with a dot per run (nothing when every run failed)."""
    if not line:
        return []
    return [
        f'<polyline class="duration" points="{" ".join(line)}" fill="none"'
        ' stroke="#c26a00" stroke-width="2"/>',
        *(
            f'<circle cx="{pt.split(",")[0]}" cy="{pt.split(",")[1]}" r="2.5" fill="#c26a00"/>'
            for pt in line
        ),
    ]


def _legend(f: _Frame, runs: int) -> str:
    x, height = f.left + f.plot_w, f.height
    return (
        f'<text x="{f.left}" y="{height - 10}" fill="#666">{runs} runs, oldest left'
        "</text>"
        f'<rect x="{x - 190}" y="{height - 19}" width="10" height="10"'
        ' fill="#79aec8"/>'
        f'<text x="{x - 176}" y="{height - 10}">dump size</text>'
        f'<line x1="{x - 110}" y1="{height - 14}" x2="{x - 96}"'
        f' y2="{height - 14}" stroke="#c26a00" stroke-width="2"/>'
        f'<text x="{x - 90}" y="{height - 10}">duration</text>'
        "</svg>"
    )
