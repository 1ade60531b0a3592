"""Draw the report of ``benchmarks.all`` as SVG: throughput by batch size, latency histogram.

    python -m benchmarks.plot [--json benchmarks/results/latest.json] [--out docs/img]

A few lines of SVG by hand: no plotting library needed.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from .common import RESULTS_DIR

ROOT = Path(__file__).resolve().parent.parent
COLORS = {"pgqueue-sync": "#2b6cb0", "pgqueuer": "#dd6b20", "SQL ceiling": "#718096"}
FONT = 'font-family="sans-serif" font-size="12"'


class Svg:
    """A tiny SVG writer: rectangles, lines, text."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self.items: list[str] = []

    def rect(self, x: float, y: float, w: float, h: float, fill: str, title: str = "") -> None:
        tip = f"<title>{escape(title)}</title>" if title else ""
        self.items.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{fill}">'
            f"{tip}</rect>"
        )

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str = "#333") -> None:
        self.items.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}"/>'
        )

    def text(self, x: float, y: float, body: str, anchor: str = "start", size: int = 12) -> None:
        self.items.append(
            f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-family="sans-serif" '
            f'font-size="{size}">{escape(body)}</text>'
        )

    def render(self) -> str:
        body = "\n".join(self.items)
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" '
            f'height="{self.height}" viewBox="0 0 {self.width} {self.height}" {FONT}>\n'
            f'<rect width="100%" height="100%" fill="white"/>\n{body}\n</svg>\n'
        )


def nice_max(value: float) -> float:
    """A round number at or above ``value`` for an axis."""
    if value <= 0:
        return 1.0
    exp = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * exp >= value:
            return step * exp
    return 10 * exp


def legend(svg: Svg, names: Sequence[str], x: float, y: float) -> None:
    for i, name in enumerate(names):
        svg.rect(x, y + i * 18, 12, 12, COLORS.get(name, "#999"))
        svg.text(x + 18, y + i * 18 + 10, name)


def bar_chart(
    title: str, groups: list[str], series: dict[str, list[float | None]], unit: str
) -> str:
    """Grouped bars: one group per label, one bar per series."""
    width, height = 640, 360
    left, right, top, bottom = 70, 150, 40, 50
    svg = Svg(width, height)
    svg.text(width / 2, 22, title, anchor="middle", size=14)
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for vs in series.values() for v in vs if v is not None]
    top_value = nice_max(max(values, default=1.0))
    for i in range(6):
        value = top_value * i / 5
        y = top + plot_h - plot_h * i / 5
        svg.line(left, y, left + plot_w, y, "#e2e8f0")
        svg.text(left - 6, y + 4, f"{value:,.0f}", anchor="end")
    svg.line(left, top, left, top + plot_h)
    svg.line(left, top + plot_h, left + plot_w, top + plot_h)
    group_w = plot_w / max(1, len(groups))
    bar_w = group_w * 0.7 / max(1, len(series))
    for g, label in enumerate(groups):
        x0 = left + g * group_w + group_w * 0.15
        for s, (name, vs) in enumerate(series.items()):
            bar = vs[g] if g < len(vs) else None
            if bar is None:
                continue
            value = bar
            h = plot_h * value / top_value
            x = x0 + s * bar_w
            svg.rect(x, top + plot_h - h, bar_w - 2, h, COLORS.get(name, "#999"), f"{value:,.0f}")
            svg.text(x + bar_w / 2 - 1, top + plot_h - h - 4, f"{value / 1000:,.1f}k", "middle", 10)
        svg.text(left + g * group_w + group_w / 2, top + plot_h + 18, label, anchor="middle")
    svg.text(left + plot_w / 2, height - 10, unit, anchor="middle")
    legend(svg, list(series), left + plot_w + 16, top + 10)
    return svg.render()


def histogram(title: str, series: dict[str, list[float]], bins: int = 30) -> str:
    """Latency histogram (ms), series overlaid as outlined step bars."""
    width, height = 640, 360
    left, right, top, bottom = 60, 150, 40, 50
    svg = Svg(width, height)
    svg.text(width / 2, 22, title, anchor="middle", size=14)
    plot_w, plot_h = width - left - right, height - top - bottom
    everything = [v for vs in series.values() for v in vs]
    if not everything:
        return svg.render()
    hi = nice_max(sorted(everything)[max(0, int(len(everything) * 0.995) - 1)])
    step = hi / bins
    counts = {
        name: [sum(1 for v in vs if b * step <= v < (b + 1) * step) for b in range(bins)]
        for name, vs in series.items()
    }
    shares = {name: [c / max(1, len(series[name])) for c in cs] for name, cs in counts.items()}
    top_share = max((s for ss in shares.values() for s in ss), default=1.0) or 1.0
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        svg.line(left, y, left + plot_w, y, "#e2e8f0")
        svg.text(left - 6, y + 4, f"{top_share * i / 4:.0%}", anchor="end")
    svg.line(left, top, left, top + plot_h)
    svg.line(left, top + plot_h, left + plot_w, top + plot_h)
    bin_w = plot_w / bins
    n = len(series)
    for s, (name, ss) in enumerate(shares.items()):
        for b, share in enumerate(ss):
            if share <= 0:
                continue
            h = plot_h * share / top_share
            svg.rect(
                left + b * bin_w + s * bin_w / n,
                top + plot_h - h,
                bin_w / n,
                h,
                COLORS.get(name, "#999"),
                f"{name}: {share:.1%} in {b * step:.2f}-{(b + 1) * step:.2f} ms",
            )
    for i in range(6):
        x = left + plot_w * i / 5
        svg.text(x, top + plot_h + 16, f"{hi * i / 5:g}", anchor="middle")
    svg.text(left + plot_w / 2, height - 10, "enqueue to handler start (ms)", anchor="middle")
    legend(svg, list(series), left + plot_w + 16, top + 10)
    return svg.render()


def draw(report: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    drain = report["drain"]
    groups = [f"batch {row['batch_size']}" for row in drain]
    series: dict[str, list[float | None]] = {
        "pgqueue-sync": [row.get("ours_median") for row in drain],
        "pgqueuer": [row.get("pgqueuer_median") for row in drain],
        "SQL ceiling": [row.get("ceiling_median") for row in drain],
    }
    series = {k: v for k, v in series.items() if any(x is not None for x in v)}
    written = []
    path = out / "throughput.svg"
    path.write_text(
        bar_chart("Drain throughput, no-op handler, one process", groups, series, "jobs/s")
    )
    written.append(path)
    enq = report["enqueue"]
    path = out / "enqueue.svg"
    path.write_text(
        bar_chart(
            "Enqueue throughput, one connection",
            [f"lists of {row['list_size']:,}" for row in enq],
            {
                k: v
                for k, v in {
                    "pgqueue-sync": [row.get("ours_median") for row in enq],
                    "pgqueuer": [row.get("pgqueuer_median") for row in enq],
                }.items()
                if any(x is not None for x in v)
            },
            "jobs/s",
        )
    )
    written.append(path)
    lat = report["latency"]
    lat_series = {"pgqueue-sync": lat["ours"]["latencies_ms"]}
    if "pgqueuer" in lat:
        lat_series["pgqueuer"] = lat["pgqueuer"]["latencies_ms"]
    path = out / "latency.svg"
    path.write_text(histogram("Pick-up latency of an idle worker", lat_series))
    written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--json", default=str(RESULTS_DIR / "latest.json"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "img"))
    args = parser.parse_args()
    report = json.loads(Path(args.json).read_text())
    for path in draw(report, Path(args.out)):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
