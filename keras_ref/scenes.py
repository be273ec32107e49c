"""Digit scenes: RGB canvases with 1-3 real handwritten digits and 5 reference captions each.

Every scene places ``count`` digits (from the bundled scikit-learn digits) side by side, left to right:
the canvas has three equal columns, the k-th digit sits at a random offset inside column k (so the
digits never overlap horizontally), each with a color, a size class and a random height. The
digits of the train/val/test scenes come from the train/val/test split of ``load_digits_split`` (same
``digits_seed``), so test scenes show digit images no model has seen.

An object phrase is ``<size> <color> <digit>`` ("large red three"); sizes have synonyms
(small|little, large|big). Templates, with objects A, B, C listed left to right:

- 1 digit : "a A", "there is a A", "a single A", "only a A", "a lone A"
- 2 digits: "a A to the left of a B", "a B to the right of a A", "a A and a B", "a A next to a B",
  "a A on the left and a B on the right", "a B on the right and a A on the left", "there is a A left of a B"
- 3 digits: "a A a B and a C", "from left to right a A a B and a C", "a A then a B then a C",
  "a B between a A and a C", "a A and a B and a C"

Each scene's 5 captions use 5 different templates and independently drawn synonyms.

Each split draws from its own random stream (seeded by ``(seed, split index)``), so ``n_train`` and
``n_val`` do not change the test split: ``load_digit_scenes(n_train=0, n_val=0, n_test=300)["test"]``
rebuilds the default test split alone, bit for bit.

Returned per split (``load_digit_scenes(...)[split]``):
``images`` float32 (n, size, size, 3) in [0, 1] on black; ``captions`` list of 5 strings per image;
``tokens`` the same captions as word lists; ``ids`` strings ``scene-<split>-<index:05d>``;
``scenes`` per image a list of objects (left to right) ``{digit, digit_id, color, size, px, x, y}``
where ``(x, y)`` is the top-left corner and ``px`` the side of the square glyph.
"""

import numpy as np
from tqdm.auto import tqdm

from keras_ref.digits import DIGIT_WORDS, SPLITS, raw_digits, resize_bilinear, stratified_split
from keras_ref.vocab import tokenize

COLORS = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "white": (1.0, 1.0, 1.0),
}
COLOR_NAMES = tuple(COLORS)
SIZE_NAMES = ("small", "large")
SIZE_SYNONYMS = {"small": ("small", "little"), "large": ("large", "big")}
SIZE_PIXELS = {"small": (11, 13), "large": (17, 19)}   # inclusive range of the glyph side
COUNT_PROBS = (0.2, 0.4, 0.4)                           # P(1 digit), P(2), P(3)
MIN_GAP = 2                                             # pixels between neighbours: "left of" is never ambiguous
COLUMNS = 3                                             # the k-th digit from the left sits in column k
MAX_OBJECTS = 3

TEMPLATES = {
    1: ("a {A}", "there is a {A}", "a single {A}", "only a {A}", "a lone {A}"),
    2: ("a {A} to the left of a {B}", "a {B} to the right of a {A}", "a {A} and a {B}",
        "a {A} next to a {B}", "a {A} on the left and a {B} on the right",
        "a {B} on the right and a {A} on the left", "there is a {A} left of a {B}"),
    3: ("a {A} a {B} and a {C}", "from left to right a {A} a {B} and a {C}",
        "a {A} then a {B} then a {C}", "a {B} between a {A} and a {C}", "a {A} and a {B} and a {C}"),
}
CAPTIONS_PER_IMAGE = 5


def _layout(rng, widths, canvas):
    """Left x of each glyph: glyph k sits in column k (of ``COLUMNS`` equal columns) at a random offset.

    Fixed columns make "the k-th digit from the left" a matter of where to look rather than of
    sorting, which a small CNN + RNN captioner learns in minutes; glyphs keep ``MIN_GAP`` between
    them (a glyph never touches its column's edges).
    """
    col = canvas // COLUMNS
    xs = []
    for k, w in enumerate(widths):
        if w > col - MIN_GAP:
            raise ValueError(f"a {w}px glyph does not fit a {col}px column")
        xs.append(k * col + MIN_GAP // 2 + int(rng.integers(0, col - MIN_GAP - w + 1)))
    return xs


def _sample_scene(rng, pool, labels, canvas):
    count = int(rng.choice(len(COUNT_PROBS), p=COUNT_PROBS)) + 1
    objects = []
    for _ in range(count):
        digit_id = int(pool[rng.integers(len(pool))])
        size = SIZE_NAMES[int(rng.integers(len(SIZE_NAMES)))]
        lo, hi = SIZE_PIXELS[size]
        objects.append({
            "digit": int(labels[digit_id]),
            "digit_id": digit_id,
            "color": COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))],
            "size": size,
            "px": int(rng.integers(lo, hi + 1)),
        })
    for obj, x in zip(objects, _layout(rng, [o["px"] for o in objects], canvas)):
        obj["x"] = int(x)
        obj["y"] = int(rng.integers(0, canvas - obj["px"] + 1))
    return objects


def _phrase(rng, obj):
    size = SIZE_SYNONYMS[obj["size"]][int(rng.integers(2))]
    return f"{size} {obj['color']} {DIGIT_WORDS[obj['digit']]}"


def describe(rng, objects):
    """Five captions of one scene from five different templates of its object count."""
    templates = TEMPLATES[len(objects)]
    chosen = rng.choice(len(templates), size=CAPTIONS_PER_IMAGE, replace=False)
    captions = []
    for t in chosen:
        slots = {k: _phrase(rng, o) for k, o in zip("ABC", objects)}
        captions.append(templates[int(t)].format(**slots))
    return captions


def render(objects, glyphs, canvas):
    """Paint the scene: each glyph's gray levels times its color, on a black canvas."""
    image = np.zeros((canvas, canvas, 3), dtype=np.float32)
    for obj in objects:
        px, x, y = obj["px"], obj["x"], obj["y"]
        glyph = resize_bilinear(glyphs[obj["digit_id"]], px, px).astype(np.float32)
        color = np.asarray(COLORS[obj["color"]], dtype=np.float32)
        patch = image[y:y + px, x:x + px]
        image[y:y + px, x:x + px] = np.maximum(patch, glyph[..., None] * color)
    return image


def load_digit_scenes(n_train=3000, n_val=300, n_test=300, size=64, seed=0, digits_seed=0, progress=True):
    """Build the three scene splits; see the module docstring for the returned structure."""
    if int(size) // COLUMNS < SIZE_PIXELS["large"][1] + MIN_GAP:
        raise ValueError(f"size must fit three large digits side by side (>= 63). Received: size={size!r}")
    glyphs, labels = raw_digits()
    pools = stratified_split(labels, seed=digits_seed)
    counts = {"train": n_train, "val": n_val, "test": n_test}
    out = {}
    for split_index, split in enumerate(SPLITS):
        # One independent stream per split: growing n_train never changes the test scenes.
        rng = np.random.default_rng([seed, split_index])
        n = int(counts[split])
        images = np.zeros((n, size, size, 3), dtype=np.float32)
        captions, scenes = [], []
        for i in tqdm(range(n), desc=f"digit scenes ({split})", unit="img", disable=not progress, leave=False):
            objects = _sample_scene(rng, pools[split], labels, size)
            images[i] = render(objects, glyphs, size)
            captions.append(describe(rng, objects))
            scenes.append(objects)
        out[split] = {
            "images": images,
            "captions": captions,
            "tokens": [[tokenize(c) for c in caps] for caps in captions],
            "ids": [f"scene-{split}-{i:05d}" for i in range(n)],
            "scenes": scenes,
        }
    return out


def slot_targets(scenes):
    """Per-slot class targets (left to right, ``MAX_OBJECTS`` slots) for pre-training a scene encoder.

    Returns ``{"digit_k": (n,), "color_k": (n,), "size_k": (n,)}`` for k = 0..2; an empty slot has the
    extra class ``len(names)`` (10 for digits).
    """
    targets = {}
    for k in range(MAX_OBJECTS):
        for key, names in (("digit", DIGIT_WORDS), ("color", COLOR_NAMES), ("size", SIZE_NAMES)):
            values = []
            for objects in scenes:
                if k < len(objects):
                    v = objects[k][key]
                    values.append(v if key == "digit" else names.index(v))
                else:
                    values.append(len(names))
            targets[f"{key}_{k}"] = np.asarray(values, dtype=np.int64)
    return targets


def cell_targets(scenes, canvas, grid):
    """Per-cell classes on a ``grid x grid`` partition of the canvas, for pre-training a scene encoder.

    A cell takes the attributes of the glyph whose square contains the cell's center (glyphs never
    overlap horizontally, so at most one does); with cells of at most 8 px every glyph (>= 11 px)
    covers at least one center. Returns ``{"digit": (n, grid, grid), "color": ..., "size": ...}``;
    an empty cell has the extra class ``len(names)``.
    """
    centers = (np.arange(grid) + 0.5) * (canvas / grid)
    out = {"digit": np.full((len(scenes), grid, grid), len(DIGIT_WORDS), dtype=np.int64),
           "color": np.full((len(scenes), grid, grid), len(COLOR_NAMES), dtype=np.int64),
           "size": np.full((len(scenes), grid, grid), len(SIZE_NAMES), dtype=np.int64)}
    for i, objects in enumerate(scenes):
        for obj in objects:
            rows = (centers >= obj["y"]) & (centers < obj["y"] + obj["px"])
            cols = (centers >= obj["x"]) & (centers < obj["x"] + obj["px"])
            cells = np.ix_(rows, cols)
            out["digit"][i][cells] = obj["digit"]
            out["color"][i][cells] = COLOR_NAMES.index(obj["color"])
            out["size"][i][cells] = SIZE_NAMES.index(obj["size"])
    return out


def digit_crops(n, split="train", canvas=24, seed=0, digits_seed=0):
    """``n`` single glyphs (random digit of ``split``, size, color, offset) on small canvases.

    Returns ``(images float32 (n, canvas, canvas, 3), digit labels)``; used to teach a CNN digit
    shapes cheaply before it sees whole scenes.
    """
    glyphs, labels = raw_digits()
    pool = stratified_split(labels, seed=digits_seed)[split]
    rng = np.random.default_rng([seed, SPLITS.index(split), 1])
    lo, hi = SIZE_PIXELS["small"][0], SIZE_PIXELS["large"][1]
    images = np.zeros((n, canvas, canvas, 3), dtype=np.float32)
    y = np.zeros(n, dtype=np.int64)
    for i in range(n):
        digit_id = int(pool[rng.integers(len(pool))])
        px = int(rng.integers(lo, hi + 1))
        obj = {"digit_id": digit_id, "px": px, "color": COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))],
               "x": int(rng.integers(0, canvas - px + 1)), "y": int(rng.integers(0, canvas - px + 1))}
        images[i] = render([obj], glyphs, canvas)
        y[i] = labels[digit_id]
    return images, y
