"""Each non-TFDS source of the data layer works through `tools/search.py --dataset ...`.

(TFDS names go through the same `load_dataset` call and are tested with mock data in
tests/test_data_tfds.py; `demo` is the dataset of tests/test_search.py.)
"""
import json

import numpy as np
import pytest
from PIL import Image

from test_search import FOUR_OPS
from ubnas_tf.data.idx import write_idx

TINY = ["cells=5", "channels=8", "nodes=2", "multiplier=2", "stem_multiplier=1",
        "batch_size=8", "epochs=1", "partial_channels.normal=4", "partial_channels.reduce=2",
        "warmup_epochs=0", "early_stop.patience=null", "data.input_size=16",
        "partial_channels.min_per_op=2", FOUR_OPS]


def _search(tool, dataset, output_dir, *overrides):
    sets = [arg for item in [*TINY, *overrides] for arg in ("--set", item)]
    return tool("tools/search.py", "--dataset", dataset, "--output_dir", str(output_dir), *sets)


def _image_folder(root, *, corrupt: bool):
    rng = np.random.default_rng(0)
    for label, colour in enumerate(["red", "green", "blue"]):
        folder = root / colour
        folder.mkdir(parents=True)
        for index in range(12):
            size = (20 + index, 18 + 2 * label)  # images of any size, resized to input_size
            pixels = rng.integers(0, 255, size=(*size[::-1], 3), dtype=np.uint8)
            pixels[..., label] = 255
            Image.fromarray(pixels).save(folder / f"{index}.png")
    if corrupt:
        (root / "red" / "broken.png").write_bytes(b"\x89PNG not really")


@pytest.mark.slow
def test_folder_dataset_with_a_corrupt_image(tmp_path, tool):
    _image_folder(tmp_path / "images", corrupt=True)
    dataset = f"folder:{tmp_path / 'images'}"
    refused = _search(tool, dataset, tmp_path / "refused")
    assert refused.returncode == 2, refused.stderr[-2000:]
    error = refused.stderr.strip().splitlines()[-1]
    assert "broken.png" in error and "skip_corrupt" in error
    assert not (tmp_path / "refused" / "genotype.json").exists()

    result = _search(tool, dataset, tmp_path / "run", "data.skip_corrupt=true")
    assert result.returncode == 0, result.stderr[-3000:]
    genotype = json.loads((tmp_path / "run" / "genotype.json").read_text())
    assert genotype["space"] == "binary" and len(genotype["normal"]) == 4
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "skip_corrupt: true" in config


@pytest.mark.slow
def test_idx_dataset(tmp_path, tool):
    rng = np.random.default_rng(1)
    folder = tmp_path / "idx"
    folder.mkdir()
    for prefix, count in (("train", 64), ("t10k", 16)):
        labels = np.arange(count, dtype=np.uint8) % 4
        images = rng.integers(0, 60, size=(count, 16, 16), dtype=np.uint8)
        images[np.arange(count), labels * 4, :] = 255  # a learnable stripe per class
        write_idx(str(folder / f"{prefix}-images-idx3-ubyte.gz"), images)
        write_idx(str(folder / f"{prefix}-labels-idx1-ubyte.gz"), labels)
    result = _search(tool, f"idx:{folder}", tmp_path / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "run" / "search_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and (tmp_path / "run" / "genotype.png").stat().st_size > 1000


@pytest.mark.slow
def test_tfds_name_runs_the_search(tmp_path):
    """A TFDS name (CIFAR-10 through tfds.testing.mock_data: no data on this machine)."""
    import tensorflow_datasets as tfds

    from ubnas_tf import config as config_lib
    from ubnas_tf.search.run import run_search

    config = config_lib.load("search", overrides=[*TINY, "max_examples=32", "data.input_size=null"])
    with tfds.testing.mock_data(num_examples=48, policy=tfds.testing.MockPolicy.USE_CODE):
        result = run_search(config, dataset="cifar10", output_dir=tmp_path / "run",
                            print_fn=lambda *a, **k: None)
    assert result.genotype.space == "binary" and result.epochs_run == 1
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["dataset"] == "cifar10"
    assert (tmp_path / "run" / "genotype.json").is_file()
