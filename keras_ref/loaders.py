"""Loaders for the real datasets people use, in their published layouts (nothing is downloaded).

- Intel Image Classification: ``<root>/seg_train/seg_train/<class>/*.jpg`` (and optionally
  ``seg_test/seg_test/<class>/*.jpg``), images resized on load. ``load_intel_split`` returns the same
  ``{split: (x, y, ids)}`` structure as ``keras_ref.data.load_digits_split``: val is a stratified share
  of seg_train, test is seg_test (or another share of seg_train if seg_test is absent).
- Flickr8k, original layout: ``Flickr8k.token.txt`` (``name.jpg#k<TAB>caption``; also looked up in
  ``Flickr8k_text/``), images in ``Flicker8k_Dataset/``, splits ``Flickr_8k.{train,dev,test}Images.txt``
  (dev is returned as "val").
- Flickr8k, Kaggle layout: ``Images/`` + ``captions.txt`` (CSV with header ``image,caption``); it has no
  split files, so images are split 75/12.5/12.5 by a seeded permutation of the sorted names.
- COCO captions: an annotations JSON (``images[{id, file_name}]``, ``annotations[{image_id, caption}]``)
  plus the image folder; split like the Kaggle layout.

Caption loaders return ``{split: {"images", "captions", "tokens", "ids"}}`` like
``keras_ref.scenes.load_digit_scenes``: float32 images (n, size, size, 3) in [0, 1], the raw captions
per image, the same tokenized with ``keras_ref.vocab.tokenize``, and ids (image file names; COCO ids
for COCO). Images come out sorted by file name so that every run sees the same order.
"""

import csv
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from keras_ref.digits import SPLITS, stratified_split
from keras_ref.vocab import tokenize

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def load_image(path, size):
    """RGB float32 (size, size, 3) in [0, 1], bilinear resize with PIL."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB").resize((size, size), Image.BILINEAR)
        return np.asarray(im, dtype=np.float32) / 255.0


def load_images(paths, size, desc="images", progress=True):
    out = np.zeros((len(paths), size, size, 3), dtype=np.float32)
    for i, p in enumerate(tqdm(paths, desc=desc, unit="img", disable=not progress, leave=False)):
        out[i] = load_image(p, size)
    return out


def _class_folder(root, kind):
    """``<root>/seg_train/seg_train`` (Kaggle nests the folder twice); a single level is accepted too."""
    for candidate in (Path(root) / kind / kind, Path(root) / kind):
        if candidate.is_dir() and any(p.is_dir() for p in candidate.iterdir()):
            return candidate
    return None


def _list_classified(folder):
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    items = [(p, c) for c in classes for p in sorted((folder / c).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    return classes, items


def load_intel_split(root, size=64, seed=0, limit_per_class=None, progress=True):
    """Intel Image Classification as ``{split: (x, y, ids)}`` plus ``"classes"``; see the module docstring."""
    train_dir = _class_folder(root, "seg_train")
    if train_dir is None:
        raise FileNotFoundError(f"no seg_train/seg_train/<class>/ folders under {root}")
    classes, items = _list_classified(train_dir)
    if limit_per_class:
        items = [it for c in classes for it in [it for it in items if it[1] == c][:limit_per_class]]
    test_dir = _class_folder(root, "seg_test")
    labels = np.array([classes.index(c) for _, c in items], dtype=np.int64)
    if test_dir is None:
        parts = stratified_split(labels, seed=seed)
        groups = {s: [items[i] for i in parts[s]] for s in SPLITS}
    else:
        parts = stratified_split(labels, seed=seed, fractions=(0.8, 0.2, 0.0))
        test_classes, test_items = _list_classified(test_dir)
        if test_classes != classes:
            raise ValueError(f"seg_test classes {test_classes} differ from seg_train classes {classes}")
        groups = {"train": [items[i] for i in parts["train"]], "val": [items[i] for i in parts["val"]],
                  "test": test_items}
    out = {"classes": classes}
    for split, group in groups.items():
        x = load_images([p for p, _ in group], size, desc=f"intel ({split})", progress=progress)
        y = np.array([classes.index(c) for _, c in group], dtype=np.int64)
        ids = [str(p.relative_to(root)) for p, _ in group]
        out[split] = (x, y, ids)
    return out


def seeded_split(names, seed=0, fractions=(0.75, 0.125, 0.125)):
    """Split sorted ``names`` into train/val/test by a seeded permutation; each part sorted again."""
    names = sorted(names)
    order = np.random.default_rng(seed).permutation(len(names))
    n_val = int(round(len(names) * fractions[1]))
    n_test = int(round(len(names) * fractions[2]))
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    return {s: sorted(names[i] for i in part) for s, part in zip(SPLITS, (train, val, test))}


def _caption_splits(captions, image_dir, splits, size, limit, progress, name):
    out = {}
    for split in SPLITS:
        ids = [i for i in splits[split] if i in captions][: limit or None]
        paths = [os.path.join(image_dir, i) for i in ids]
        caps = [captions[i] for i in ids]
        out[split] = {"images": load_images(paths, size, desc=f"{name} ({split})", progress=progress),
                      "captions": caps, "tokens": [[tokenize(c) for c in cs] for cs in caps], "ids": list(ids)}
    return out


def _read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def load_flickr8k(root, size=64, seed=0, limit=None, progress=True):
    """Flickr8k in the original or the Kaggle layout (detected); see the module docstring."""
    root = Path(root)
    token_file = next((p for p in (root / "Flickr8k.token.txt", root / "Flickr8k_text" / "Flickr8k.token.txt")
                       if p.is_file()), None)
    captions = defaultdict(list)
    if token_file is not None:
        image_dir = root / "Flicker8k_Dataset"
        for line in _read_lines(token_file):
            key, _, caption = line.partition("\t")
            captions[key.split("#")[0]].append(caption.strip())
        split_files = {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt",
                       "test": "Flickr_8k.testImages.txt"}
        splits = {}
        for split, fname in split_files.items():
            path = next((p for p in (root / fname, token_file.parent / fname) if p.is_file()), None)
            if path is None:
                raise FileNotFoundError(f"Flickr8k split file {fname} not found under {root}")
            splits[split] = sorted(_read_lines(path))
    elif (root / "captions.txt").is_file():
        image_dir = root / "Images"
        with open(root / "captions.txt", encoding="utf-8", newline="") as f:
            rows = csv.reader(f)
            header = next(rows, None)
            if header is None or [h.strip().lower() for h in header[:2]] != ["image", "caption"]:
                raise ValueError(f"{root / 'captions.txt'} must start with the header 'image,caption'")
            for row in rows:
                if len(row) >= 2:
                    # An unquoted caption with commas arrives as several fields: join them back.
                    captions[row[0].strip()].append(",".join(row[1:]).strip())
        splits = seeded_split(list(captions), seed=seed)
    else:
        raise FileNotFoundError(f"neither Flickr8k.token.txt nor captions.txt found under {root}")
    # The published token file lists a few images that the image folder lacks: keep what exists.
    captions = {k: v for k, v in captions.items() if (image_dir / k).is_file()}
    return _caption_splits(captions, image_dir, splits, size, limit, progress, "flickr8k")


def load_coco_captions(annotations, image_dir, size=64, seed=0, limit=None, progress=True):
    """COCO captions JSON + image folder; see the module docstring."""
    with open(annotations, encoding="utf-8") as f:
        doc = json.load(f)
    files = {img["id"]: img["file_name"] for img in doc["images"]}
    by_id = defaultdict(list)
    for ann in doc["annotations"]:
        by_id[ann["image_id"]].append(ann["caption"].strip())
    captions = {files[i]: caps for i, caps in by_id.items() if i in files}
    splits = seeded_split(list(captions), seed=seed)
    out = _caption_splits(captions, image_dir, splits, size, limit, progress, "coco")
    name_to_id = {v: k for k, v in files.items()}
    for split in SPLITS:
        out[split]["ids"] = [name_to_id[n] for n in out[split]["ids"]]
    return out
