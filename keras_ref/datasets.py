"""Dataset specs for the export: the embedded defaults or a real dataset named by ``--data``.

``classification_dataset(spec)`` and ``caption_dataset(spec)`` return ``(data, meta)``: the splits and a
description the MANIFEST stores so that anyone can rebuild the same test split in the same order
(``meta["loader"]`` called with ``meta["kwargs"]``). ``dataset_record`` adds the split's size and
fingerprints.
"""

from keras_ref.data import array_sha256, ids_sha256, load_digits_split
from keras_ref.scenes import load_digit_scenes

DIGITS_KWARGS = {"size": 32, "seed": 0}
SCENES_KWARGS = {"n_train": 3000, "n_val": 300, "n_test": 300, "size": 64, "seed": 0, "digits_seed": 0}
SMOKE_SCENES = {"n_train": 60, "n_val": 20, "n_test": 20}
REAL_IMAGE_SIZE = 64


def parse_spec(spec):
    """``"kind:path"`` -> ``(kind, path)``; the empty spec is ``("", "")``."""
    if not spec:
        return "", ""
    kind, sep, path = spec.partition(":")
    if not sep or kind not in ("intel", "flickr8k", "coco") or not path:
        raise ValueError(f"--data must be intel:/path, flickr8k:/path or coco:/annotations.json,/images. "
                         f"Received: {spec!r}")
    return kind, path


def classification_dataset(spec="", smoke=False, progress=True):
    kind, path = parse_spec(spec)
    if kind == "intel":
        from keras_ref.loaders import load_intel_split

        kwargs = {"root": path, "size": REAL_IMAGE_SIZE, "seed": 0, "limit_per_class": 20 if smoke else None}
        data = load_intel_split(progress=progress, **kwargs)
        classes = data.pop("classes")
        meta = {"name": "intel", "loader": "keras_ref.loaders.load_intel_split", "kwargs": kwargs, "seed": 0,
                "classes": classes}
    else:
        data = load_digits_split(**DIGITS_KWARGS)
        meta = {"name": "digits", "loader": "keras_ref.data.load_digits_split", "kwargs": dict(DIGITS_KWARGS),
                "seed": DIGITS_KWARGS["seed"], "classes": [str(i) for i in range(10)]}
    meta["input_shape"] = list(data["train"][0].shape[1:])
    meta["n_classes"] = len(meta["classes"])
    return data, meta


def caption_dataset(spec="", smoke=False, progress=True):
    kind, path = parse_spec(spec)
    limit = 40 if smoke else None
    if kind == "flickr8k":
        from keras_ref.loaders import load_flickr8k

        kwargs = {"root": path, "size": REAL_IMAGE_SIZE, "seed": 0, "limit": limit}
        data = load_flickr8k(progress=progress, **kwargs)
        meta = {"name": "flickr8k", "loader": "keras_ref.loaders.load_flickr8k", "kwargs": kwargs,
                "min_count": 5, "max_words": 20, "attributes": False}
    elif kind == "coco":
        from keras_ref.loaders import load_coco_captions

        annotations, _, images = path.partition(",")
        kwargs = {"annotations": annotations, "image_dir": images, "size": REAL_IMAGE_SIZE, "seed": 0,
                  "limit": limit}
        data = load_coco_captions(progress=progress, **kwargs)
        meta = {"name": "coco", "loader": "keras_ref.loaders.load_coco_captions", "kwargs": kwargs,
                "min_count": 5, "max_words": 20, "attributes": False}
    else:
        kwargs = dict(SCENES_KWARGS, **(SMOKE_SCENES if smoke else {}))
        data = load_digit_scenes(progress=progress, **kwargs)
        # Scenes know each digit's attributes, which lets the CNN be pre-trained once for all captioners.
        meta = {"name": "digit_scenes", "loader": "keras_ref.data.load_digit_scenes", "kwargs": kwargs,
                "min_count": 1, "max_words": None, "attributes": True}
    meta["seed"] = kwargs["seed"]
    meta["image_shape"] = list(data["train"]["images"].shape[1:])
    return data, meta


def dataset_record(meta, x, ids, split="test"):
    """The MANIFEST's ``dataset`` entry: how to rebuild ``split`` and fingerprints of its inputs and ids."""
    keep = ("name", "loader", "kwargs", "seed")
    return {**{k: meta[k] for k in keep}, "split": split, "n": int(len(ids)),
            "ids_sha256": ids_sha256(ids), "x_sha256": array_sha256(x)}
