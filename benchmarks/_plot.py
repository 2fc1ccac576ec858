"""The cardinality plot: cost ratio and RSS growth against the number of distinct problems.

Needs matplotlib (the ``bench`` extra: ``pip install -e '.[bench]'``); it is
drawn with the Agg backend, so no display is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _harness import Measurement, median_of

if TYPE_CHECKING:
    from bench_cardinality import Row

# One colour and marker per kind of problem; its target (issue 10) is drawn
# as a dashed line of the same colour, so a reader sees the gap at a glance.
STYLE = {
    "message templates": ("tab:green", "o", 3.0),
    "texts formatted before the call": ("tab:purple", "D", None),
    "exception types": ("tab:orange", "s", 4.0),
    "call sites": ("tab:blue", "^", None),
}
RSS_TARGET_MIB = 50.0


def plot_cardinality(table: Sequence[tuple[Row, list[Measurement]]], path: Path) -> None:
    """Write a PNG of the rows that belong to a series (x: distinct problems, log scale)."""
    import matplotlib as mpl  # noqa: PLC0415 - optional dependency, loaded when asked

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - after choosing the backend

    series: dict[str, list[tuple[int, float, float, float]]] = {}
    for row, runs in table:
        if row.series:
            series.setdefault(row.series, []).append(
                (
                    row.k,
                    median_of(runs, "ratio"),
                    median_of(runs, "rss_close_kib") / 1024,
                    median_of(runs, "dropped"),
                )
            )
    figure, (cost, memory) = plt.subplots(1, 2, figsize=(12, 5.4), dpi=110)
    for name, points in sorted(series.items()):
        color, marker, target = STYLE.get(name, ("tab:grey", "o", None))
        points.sort()
        x = [p[0] for p in points]
        cost.plot(x, [p[1] for p in points], marker=marker, color=color, lw=2, label=name)
        memory.plot(x, [p[2] for p in points], marker=marker, color=color, lw=2, label=name)
        if target is not None:
            _target(cost, target, f"target, {name}: {target:g}x", color)
        for k, ratio, _, dropped in points:
            if dropped:  # a dropped call costs little: the point flatters, say so on it
                cost.annotate(
                    f"{dropped:,.0f} of the calls\ndropped by the intake",
                    (k, ratio),
                    textcoords="offset points",
                    xytext=(-8, -28),
                    ha="right",
                    fontsize=8,
                    color=color,
                )
    _target(cost, 1.0, "NullHandler", "black", dashed=False)
    _target(memory, RSS_TARGET_MIB, f"target: {RSS_TARGET_MIB:g} MiB", "dimgrey")
    cost.set_ylim(bottom=0)
    _axes(cost, "AlertHandler / NullHandler\n(block time including the drain)", "{:g}x")
    # Linear: bounded memory is the point, and a log scale hid the tick labels of
    # a range that spans less than a decade on each side of 10.
    memory.set_ylim(bottom=0)
    _axes(memory, "RSS growth including close (MiB)", "{:,.0f}")
    handles, labels = cost.get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    figure.suptitle("smtp-alerts: cost and memory against the number of distinct problems")
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(path)
    plt.close(figure)


def _target(axes: Any, y: float, text: str, color: str, *, dashed: bool = True) -> None:
    """A horizontal reference line at ``y``, labelled at its right end."""
    axes.axhline(y, linestyle="--" if dashed else "-", linewidth=1, color=color)
    axes.annotate(
        text,
        (0.99, y),
        xycoords=("axes fraction", "data"),
        ha="right",
        va="bottom",
        fontsize=9,
        color=color,
    )


def _axes(axes: Any, ylabel: str, ticks: str) -> None:
    """Log-scaled x (distinct problems), readable tick labels, a light grid."""
    from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: PLC0415 - optional

    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda y, _: ticks.format(y)))
    axes.yaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("distinct problems (log scale)")
    axes.set_ylabel(ylabel)
    axes.grid(True, which="both", alpha=0.3)
