"""Draw a genotype's two cells as graphs (DARTS's visualize.py, with matplotlib, no graphviz).

Nodes: the cell inputs c_{k-2} and c_{k-1}, the intermediate nodes 0..N-1 and the output c_{k};
one arrow per kept edge, labelled with its op, and plain arrows from the concatenated nodes to
c_{k}.
"""
from __future__ import annotations

import io
import pathlib

from ubnas_tf.search_space.genotype import Genotype
from ubnas_tf.io_utils import atomic_write_bytes

__all__ = ["plot_genotype", "save_genotype_png", "cell_layout"]

_INPUT_COLOR = "#a6d96a"
_NODE_COLOR = "#ffffbf"
_OUTPUT_COLOR = "#abd9e9"


def cell_layout(nodes: int) -> dict:
    """(x, y) of every state: inputs at the left, nodes on a zig-zag, output at the right."""
    positions = {"c_{k-2}": (0.0, 1.8), "c_{k-1}": (0.0, -1.8)}
    for node in range(nodes):
        positions[str(node)] = (2.0 + 1.8 * node, 1.2 if node % 2 == 0 else -1.2)
    positions["c_{k}"] = (2.0 + 1.8 * nodes + 0.4, 0.0)
    return positions


def _state_name(index: int) -> str:
    return {0: "c_{k-2}", 1: "c_{k-1}"}.get(index, str(index - 2))


def _draw_cell(axes, edges, concat, title: str) -> None:
    nodes = len(edges) // 2
    positions = cell_layout(nodes)
    colors = {name: _NODE_COLOR for name in positions}
    colors.update({"c_{k-2}": _INPUT_COLOR, "c_{k-1}": _INPUT_COLOR, "c_{k}": _OUTPUT_COLOR})
    arrow = dict(arrowstyle="-|>", color="#444444", lw=1.0, shrinkA=14, shrinkB=14)
    for position, (op, source) in enumerate(edges):
        start, end = positions[_state_name(source)], positions[str(position // 2)]
        # Bend the two inputs of a node apart so that their labels do not overlap.
        bend = 0.25 if position % 2 == 0 else -0.25
        axes.annotate("", xy=end, xytext=start,
                      arrowprops={**arrow, "connectionstyle": f"arc3,rad={bend}"})
        middle_x = (start[0] + end[0]) / 2
        middle_y = (start[1] + end[1]) / 2
        # The label sits on the middle of the bent arrow: matplotlib's arc3 is a quadratic
        # Bezier with control point mid + rad * (dy, -dx), whose middle is half that offset
        # (in display space: the axes keep an equal aspect so data space matches).
        dx, dy = end[0] - start[0], end[1] - start[1]
        offset_x, offset_y = bend * dy / 2, -bend * dx / 2
        axes.text(middle_x + offset_x, middle_y + offset_y, op, fontsize=7, ha="center",
                  va="center", bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none",
                                         alpha=0.85))
    for state in concat:
        axes.annotate("", xy=positions["c_{k}"], xytext=positions[_state_name(state)],
                      arrowprops={**arrow, "color": "#888888", "linestyle": "dashed"})
    for name, (x, y) in positions.items():
        label = f"${name}$" if name.startswith("c_") else name
        axes.text(x, y, label, ha="center", va="center", fontsize=9,
                  bbox=dict(boxstyle="round,pad=0.4", fc=colors[name], ec="#333333"))
    xs = [x for x, _ in positions.values()]
    axes.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    axes.set_ylim(-2.5, 2.5)
    axes.set_aspect("equal")
    axes.set_title(title, fontsize=10)
    axes.axis("off")


def plot_genotype(genotype: Genotype, title: str | None = None):
    """A matplotlib Figure with the normal cell above the reduction cell."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    nodes = genotype.nodes
    figure = Figure(figsize=(2.5 + 1.8 * nodes, 7.5))
    top, bottom = figure.subplots(2, 1)
    _draw_cell(top, genotype.normal, genotype.normal_concat, "normal cell")
    _draw_cell(bottom, genotype.reduce, genotype.reduce_concat, "reduction cell")
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    return figure


def _save_png(figure, path) -> pathlib.Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    path = pathlib.Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def save_genotype_png(genotype: Genotype, path, title: str | None = None) -> pathlib.Path:
    """Render `genotype` and write the PNG atomically."""
    return _save_png(plot_genotype(genotype, title), path)


def plot_accuracy_vs_ops(rows, title: str | None = None):
    """Top-1 against OPs (FLOPs + BOPs/64, log scale) of the rows of a results table
    (`network`, `test_top1`, `ops`): binary networks filled, float ones hollow."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2))
    axes = figure.subplots()
    for row in rows:
        binary = "float" not in row["network"]
        x, y = row["ops"] / 1e6, 100 * row["test_top1"]
        axes.scatter([x], [y], s=60, marker="o" if binary else "s",
                     facecolors="#3b7dd8" if binary else "none", edgecolors="#1f3f73")
        axes.annotate(row["network"], (x, y), textcoords="offset points", xytext=(6, 4),
                      fontsize=8)
    axes.set_xscale("log")
    axes.margins(x=0.3, y=0.15)  # room for the labels
    axes.set_xlabel("OPs (millions, FLOPs + BOPs/64, log scale)")
    axes.set_ylabel("test top-1 (%)")
    axes.grid(True, which="both", alpha=0.3)
    if title:
        axes.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


def save_accuracy_vs_ops_png(rows, path, title: str | None = None) -> pathlib.Path:
    """Render `plot_accuracy_vs_ops` and write the PNG atomically."""
    return _save_png(plot_accuracy_vs_ops(rows, title), path)
