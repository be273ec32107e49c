"""Real-data loaders on tiny fixtures laid out exactly like the published datasets."""

import json

import numpy as np
import pytest
from PIL import Image

from keras_ref.loaders import load_coco_captions, load_flickr8k, load_intel_split, seeded_split

INTEL_CLASSES = ["buildings", "forest", "glacier"]


def write_jpg(path, color, size=(30, 20)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, quality=100)


def make_intel(root, per_class=5, with_test=True):
    for k, c in enumerate(INTEL_CLASSES):
        for i in range(per_class):
            write_jpg(root / "seg_train" / "seg_train" / c / f"{k * 100 + i}.jpg", (80 * k, 10 * i, 200))
        if with_test:
            write_jpg(root / "seg_test" / "seg_test" / c / f"{k * 1000}.jpg", (80 * k, 0, 0))


def test_intel_layout_resizes_and_labels_by_folder(tmp_path):
    make_intel(tmp_path)
    data = load_intel_split(tmp_path, size=16, progress=False)
    assert data["classes"] == INTEL_CLASSES
    x, y, ids = data["test"]
    assert x.shape == (3, 16, 16, 3) and x.dtype == np.float32
    assert ids == [f"seg_test/seg_test/{c}/{k * 1000}.jpg" for k, c in enumerate(INTEL_CLASSES)]
    np.testing.assert_array_equal(y, [0, 1, 2])
    np.testing.assert_allclose(x[1, 8, 8], [80 / 255, 0, 0], atol=2 / 255)   # the uniform image's color
    train_ids, val_ids = set(data["train"][2]), set(data["val"][2])
    assert not train_ids & val_ids and len(train_ids | val_ids) == 15
    assert sorted(np.bincount(data["val"][1]).tolist()) == [1, 1, 1]        # stratified 80/20
    for split in ("train", "val"):
        for label, rel in zip(data[split][1], data[split][2]):
            assert rel.split("/")[2] == INTEL_CLASSES[label]


def test_intel_without_seg_test_splits_train_three_ways(tmp_path):
    make_intel(tmp_path, per_class=10, with_test=False)
    data = load_intel_split(tmp_path, size=8, progress=False)
    sizes = [len(data[s][2]) for s in ("train", "val", "test")]
    assert sizes == [18, 6, 6]


def test_intel_missing_layout_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no seg_train/seg_train/<class>/ folders under"):
        load_intel_split(tmp_path, progress=False)


def make_flickr_original(root, names):
    lines = []
    for n in names:
        write_jpg(root / "Flicker8k_Dataset" / n, (10, 200, 10))
        lines += [f"{n}#{k}\tA dog number {k} runs , fast ." for k in range(5)]
    lines.append("missing.jpg#0\tAn image the folder lacks .")
    (root / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    (root / "Flickr_8k.trainImages.txt").write_text("\n".join(names[:3]) + "\n")
    (root / "Flickr_8k.devImages.txt").write_text(names[3] + "\n")
    (root / "Flickr_8k.testImages.txt").write_text(names[4] + "\nmissing.jpg\n")


def test_flickr8k_original_layout(tmp_path):
    names = [f"{1000 + i}_abc.jpg" for i in range(5)]
    make_flickr_original(tmp_path, names)
    data = load_flickr8k(tmp_path, size=12, progress=False)
    assert data["train"]["ids"] == names[:3] and data["val"]["ids"] == [names[3]]
    assert data["test"]["ids"] == [names[4]]                 # the listed but absent image is skipped
    assert data["train"]["captions"][0][2] == "A dog number 2 runs , fast ."
    assert data["train"]["tokens"][0][2] == ["a", "dog", "number", "2", "runs", "fast"]
    assert data["test"]["images"].shape == (1, 12, 12, 3)


def test_flickr8k_kaggle_layout(tmp_path):
    names = [f"{2000 + i}_k.jpg" for i in range(8)]
    rows = ["image,caption"]
    for n in names:
        write_jpg(tmp_path / "Images" / n, (0, 0, 250))
        rows += [f"{n},A child , in pink , climbs ." if k == 0 else f'{n},"Quoted, caption {k}"' for k in range(5)]
    (tmp_path / "captions.txt").write_text("\n".join(rows) + "\n")
    data = load_flickr8k(tmp_path, size=10, progress=False)
    ids = [i for s in ("train", "val", "test") for i in data[s]["ids"]]
    assert sorted(ids) == names and [len(data[s]["ids"]) for s in ("train", "val", "test")] == [6, 1, 1]
    caps = data["train"]["captions"][0]
    assert caps[0] == "A child , in pink , climbs ." and caps[1] == "Quoted, caption 1"
    again = load_flickr8k(tmp_path, size=10, progress=False)
    assert again["test"]["ids"] == data["test"]["ids"]


def test_flickr8k_without_a_known_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"neither Flickr8k.token.txt nor captions.txt found under"):
        load_flickr8k(tmp_path, progress=False)
    (tmp_path / "captions.txt").write_text("file,text\n")
    with pytest.raises(ValueError, match=r"must start with the header 'image,caption'"):
        load_flickr8k(tmp_path, progress=False)


def test_coco_captions_json(tmp_path):
    images = [{"id": 7 + i, "file_name": f"{7 + i:012d}.jpg"} for i in range(8)]
    anns = [{"id": 100 + k, "image_id": img["id"], "caption": f"  A cat {k}. "} for img in images for k in range(2)]
    anns.append({"id": 999, "image_id": 12345, "caption": "no such image"})
    for img in images:
        write_jpg(tmp_path / "val2017" / img["file_name"], (255, 255, 0))
    ann_path = tmp_path / "captions_val2017.json"
    ann_path.write_text(json.dumps({"images": images, "annotations": anns}))
    data = load_coco_captions(ann_path, tmp_path / "val2017", size=9, progress=False)
    ids = sorted(i for s in ("train", "val", "test") for i in data[s]["ids"])
    assert ids == [img["id"] for img in images]
    first = data["train"]["ids"][0]
    assert data["train"]["captions"][0] == ["A cat 0.", "A cat 1."]
    assert isinstance(first, int)
    np.testing.assert_allclose(data["train"]["images"][0, 4, 4], [1, 1, 0], atol=2 / 255)


def test_seeded_split_is_a_partition_and_stable():
    names = [f"n{i}" for i in range(40)]
    a, b = seeded_split(names[::-1], seed=3), seeded_split(names, seed=3)
    assert a == b
    assert sorted(a["train"] + a["val"] + a["test"]) == sorted(names)
    assert [len(a[s]) for s in ("train", "val", "test")] == [30, 5, 5]
