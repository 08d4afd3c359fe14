"""`folder:PATH` datasets built from real image files in the test (issue 3)."""

import os

import numpy as np
import pytest
from absl import logging
from PIL import Image

from ubnas_tf.data import load_dataset
from ubnas_tf.errors import UserError

# (class, file name, size (W, H), PIL mode): mixed sizes, grey and colour, four formats.
_FILES = [
    ("cat", "a.png", (20, 16), "RGB"),
    ("cat", "b.jpg", (20, 16), "L"),
    ("cat", "c.bmp", (33, 25), "RGB"),
    ("cat", "d.png", (20, 16), "RGBA"),
    ("cat", "e.gif", (12, 12), "P"),
    ("dog", "a.jpeg", (20, 16), "RGB"),
    ("dog", "b.png", (40, 30), "L"),
    ("dog", "c.JPG", (20, 16), "RGB"),
    ("dog", "d.png", (20, 16), "LA"),
    ("dog", "notes.txt", None, None),
]


def _write_image(path, size, mode, seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)


def _build_folder(root, files=_FILES):
    for index, (label, name, size, mode) in enumerate(files):
        os.makedirs(os.path.join(root, label), exist_ok=True)
        path = os.path.join(root, label, name)
        if size is None:
            with open(path, "w") as stream:
                stream.write("not an image")
        else:
            _write_image(path, size, mode, seed=index)
    return str(root)


def test_mixed_folder_resized_to_most_common_size(tmp_path):
    folder = _build_folder(tmp_path)
    dataset = load_dataset(f"folder:{folder}")
    info = dataset.info
    assert info.class_names == ("cat", "dog")
    # Any colour image makes the dataset RGB; 20x16 (W x H) is the most common size.
    assert info.input_shape == (16, 20, 3)
    # One image per class is held out (10 %, at least one), the text file is ignored.
    assert (info.train_size, info.test_size) == (7, 2)
    assert len(info.mean) == 3 and all(std > 0 for std in info.std)
    images, labels = dataset.samples(2)
    assert images.shape == (2, 16, 20, 3)
    assert sorted(labels.tolist()) == [0, 1]
    batch, _ = next(iter(dataset.train(4)))
    assert batch.shape == (4, 16, 20, 3)


def test_input_size_and_grey_folder(tmp_path):
    grey = [(label, f"{i}.png", (10 + i, 8), "L") for label in ("x", "y") for i in range(3)]
    folder = _build_folder(tmp_path, grey)
    dataset = load_dataset(f"folder:{folder}", input_size=(12, 9))
    assert dataset.info.input_shape == (12, 9, 1)
    images, _ = dataset.samples(2, split="train")
    assert images.shape == (2, 12, 9, 1)


def test_train_and_test_sub_folders(tmp_path):
    train = [(label, f"{i}.png", (8, 8), "RGB") for label in "ab" for i in range(4)]
    _build_folder(tmp_path / "train", train)
    _build_folder(tmp_path / "val", [(c, "0.png", (8, 8), "RGB") for c in "ab"])
    dataset = load_dataset(f"folder:{tmp_path}")
    assert dataset.info.class_names == ("a", "b")
    assert (dataset.info.train_size, dataset.info.test_size) == (8, 2)


def test_corrupt_image_is_named_or_skipped(tmp_path, monkeypatch):
    folder = _build_folder(tmp_path)
    corrupt = os.path.join(folder, "dog", "broken.png")
    with open(corrupt, "wb") as stream:
        stream.write(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(UserError) as error:
        load_dataset(f"folder:{folder}")
    assert corrupt in str(error.value) and "skip_corrupt" in str(error.value)

    warnings = []
    monkeypatch.setattr(logging, "warning", lambda *args: warnings.append(args[0] % args[1:]))
    dataset = load_dataset(f"folder:{folder}", skip_corrupt=True)
    assert dataset.info.train_size + dataset.info.test_size == 9
    assert any(corrupt in warning for warning in warnings)


@pytest.mark.parametrize(
    "layout, message",
    [
        ({}, "has no class sub-folders"),
        ({"cat": ["a.png", "b.png"], "dog": []}, "has no images"),
        ({"cat": ["a.png", "b.png"]}, "needs at least two class sub-folders"),
        ({"cat": ["a.png"], "dog": ["a.png"]}, "too few images"),
    ],
)
def test_bad_folders_are_user_errors(tmp_path, layout, message):
    for label, names in layout.items():
        os.makedirs(tmp_path / label)
        for name in names:
            _write_image(tmp_path / label / name, (4, 4), "RGB")
    with pytest.raises(UserError, match=message) as error:
        load_dataset(f"folder:{tmp_path}")
    assert "\n" not in str(error.value)


def test_missing_folder_and_file_path_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist or is not a folder"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(UserError, match="does not exist or is not a folder"):
        load_dataset(f"folder:{tmp_path / 'file.png'}")
    with pytest.raises(UserError, match="names no folder"):
        load_dataset("folder:")
