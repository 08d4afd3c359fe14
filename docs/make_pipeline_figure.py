"""Draws docs/pipeline.png, the README's picture of the pipeline (python docs/make_pipeline_figure.py)."""
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

STAGES = [
    ("data", "--dataset\nTFDS / folder: /\nidx: / demo", "#dbe9f6"),
    ("search", "tools/search.py\nsupernet + bilevel\nGradientTape loop\nearly stopping", "#fde2c8"),
    ("genotype", "genotype.json\ngenotype.png", "#e8e1f3"),
    ("train", "tools/train.py\nbinary network\n(same op library)", "#fde2c8"),
    ("model", "model.h5\nmetrics.json", "#e8e1f3"),
    ("convert", "lce_convert\nLceBconv2d +\n--verify vs Keras", "#fde2c8"),
    ("deploy", "model.tflite\ntools/benchmark.py\nAndroid / RPi", "#d9f0d3"),
]


def main():
    figure, axes = plt.subplots(figsize=(14, 2.6), dpi=110)
    width, gap = 1.7, 0.35
    for index, (title, text, colour) in enumerate(STAGES):
        left = index * (width + gap)
        axes.add_patch(FancyBboxPatch((left, 0), width, 1.6, boxstyle="round,pad=0.05",
                                      facecolor=colour, edgecolor="#555555"))
        axes.text(left + width / 2, 1.35, title, ha="center", va="center", weight="bold",
                  fontsize=11)
        axes.text(left + width / 2, 0.62, text, ha="center", va="center", fontsize=8.5)
        if index:
            axes.add_patch(FancyArrowPatch((left - gap + 0.03, 0.8), (left - 0.03, 0.8),
                                           arrowstyle="-|>", mutation_scale=14, color="#333333"))
    axes.text(0, -0.35, "ubnas_tf/: data -> search_space (ops, genotype) -> supernet -> search -> "
              "genotype -> network -> train -> export -> benchmark", fontsize=9, color="#333333")
    axes.set_xlim(-0.1, len(STAGES) * (width + gap))
    axes.set_ylim(-0.5, 1.75)
    axes.axis("off")
    out = pathlib.Path(__file__).resolve().parent / "pipeline.png"
    figure.savefig(out, bbox_inches="tight")
    print(out)


if __name__ == "__main__":
    main()
