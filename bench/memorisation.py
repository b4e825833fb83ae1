"""Are the samples copies? Each sample's distance to its nearest training digit, against the same for
digits the model never saw (not a test).

    python sample.py ckpt=RUN_DIR/checkpoints/last.ckpt n=1000 out=SAMPLES_DIR
    python bench/memorisation.py SAMPLES_DIR/samples.npz [--figure PATH] [--json PATH]

Distances are Euclidean, between images scaled to [0, 1] (28 x 28 = 784 pixels), to the nearest of
the 4,500 images of ``mnist_5k``'s train split. Two references from the same data: the 500 val digits
(fresh draws from the distribution, never trained on) to their nearest train digit, and every train
digit to its nearest other train digit. A model that copies puts its samples far closer to the train
split than the val digits are; ``near copies`` counts samples closer than the val digits' 1st percentile.
Prints a Markdown table; ``--figure`` draws the three distributions and the closest sample-train pairs.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as bench  # noqa: E402


def flat(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (any layout) as float64 rows in [0, 1]."""
    return images.reshape(len(images), -1).double() / 255


def nearest(queries: torch.Tensor, references: torch.Tensor, exclude_self: bool = False):
    """Distance from each query row to its nearest reference row, and that reference's index."""
    distances = torch.cdist(queries, references)
    if exclude_self:  # queries are the references: leave each one's zero distance to itself out
        distances.fill_diagonal_(float("inf"))
    found = distances.min(dim=1)
    return found.values, found.indices


def summary(name: str, distances: torch.Tensor, threshold: float) -> list:
    d = distances.numpy()
    share = f"{(d < threshold).mean():.1%}"
    return [name, len(d), f"{np.percentile(d, 1):.2f}", f"{np.median(d):.2f}", f"{d.mean():.2f}", share]


def draw(path: Path, distances: dict[str, torch.Tensor], samples, train, pairs: torch.Tensor) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(9, 3.6), layout="constrained")
    left, right = figure.subfigures(1, 2, width_ratios=[1.3, 1])
    axes = left.subplots()
    bins = np.linspace(0, max(float(d.max()) for d in distances.values()), 50)
    for name, d in distances.items():
        axes.hist(d.numpy(), bins=bins, density=True, histtype="step", linewidth=1.5, label=name)
    axes.set(xlabel="distance to the nearest train digit (pixels in [0, 1])", ylabel="density")
    axes.legend(fontsize=8)
    grid = right.subplots(2, len(pairs), squeeze=False)
    right.suptitle("closest samples (top) and their nearest train digits", fontsize=9)
    for column, (sample, match) in enumerate(pairs.tolist()):
        for row, image in enumerate((samples[sample], train[match])):
            grid[row, column].imshow(image.reshape(28, 28), cmap="gray", vmin=0, vmax=1)
            grid[row, column].axis("off")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("samples", type=Path, help="a samples.npz that sample.py wrote (mnist_5k's shape)")
    parser.add_argument("--figure", type=Path, help="where to draw the distributions and closest pairs (PNG)")
    parser.add_argument("--pairs", type=int, default=6, help="closest sample-train pairs drawn")
    bench.add_json_arg(parser, "memorisation")
    args = parser.parse_args(argv)
    if not args.samples.is_file():
        sys.exit(f"Error: no samples file {args.samples}; write one with `python sample.py ckpt=... n=1000`")
    with np.load(args.samples) as npz:
        samples = flat(torch.from_numpy(npz["samples"]))
    splits = bench.mnist_5k_splits()
    train, val = flat(splits.train.images), flat(splits.val.images)
    if samples.shape[1] != train.shape[1]:
        sys.exit(f"Error: {args.samples} holds {samples.shape[1]} values per image; mnist_5k has {train.shape[1]}")
    sample_d, sample_match = nearest(samples, train)
    distances = {
        f"samples ({len(samples)})": sample_d,
        f"val digits ({len(val)}, never trained on)": nearest(val, train)[0],
        f"train digits ({len(train)}, to another)": nearest(train, train, exclude_self=True)[0],
    }
    threshold = float(np.percentile(list(distances.values())[1].numpy(), 1))  # the val digits'
    header = ["to the nearest train digit", "images", "1st percentile", "median", "mean", f"below {threshold:.2f}"]
    print(bench.markdown_table(header, [summary(name, d, threshold) for name, d in distances.items()]))
    median = {name.split(" ")[0]: float(d.median()) for name, d in distances.items()}
    print(f"\nmedian distance of the samples / of the val digits: {median['samples'] / median['val']:.2f}")
    if args.figure:
        closest = sample_d.argsort()[: args.pairs]
        draw(args.figure, distances, samples, train, torch.stack([closest, sample_match[closest]], dim=1))
        print(f"wrote {args.figure}")
    if args.json:
        near = int((sample_d < threshold).sum())
        bench.write_json(args.json, {"samples": str(args.samples), "median": median, "near_copies": near})


if __name__ == "__main__":
    main()
