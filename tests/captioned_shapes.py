"""Rendered images with compositional captions (shape, colour, size, background, position).

For the training tests and benchmarks/finetune_recall.py: every image is made on the spot from
its caption's parts, so captions are true and nothing is committed.
"""

from __future__ import annotations

import csv
import itertools
import random
from pathlib import Path

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "bar")
COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 70, 220), "yellow": (240, 210, 30),
           "purple": (140, 50, 170), "orange": (250, 140, 20), "pink": (250, 130, 200), "brown": (120, 70, 30)}
SIZES = {"small": 0.2, "medium": 0.32, "large": 0.46}
BACKGROUNDS = {"white": (245, 245, 245), "black": (15, 15, 15), "grey": (128, 128, 128)}
POSITIONS = {"on the left": (0.27, 0.5), "on the right": (0.73, 0.5), "at the top": (0.5, 0.27),
             "at the bottom": (0.5, 0.73), "in the middle": (0.5, 0.5)}


def caption(shape: str, colour: str, size: str, background: str, position: str) -> str:
    """'a small red circle on the left, on a white background'."""
    return f"a {size} {colour} {shape} {position}, on a {background} background"


def render(shape: str, colour: str, size: str, background: str, position: str, side: int = 64,
           jitter: random.Random | None = None) -> Image.Image:
    """The picture a caption describes."""
    image = Image.new("RGB", (side, side), BACKGROUNDS[background])
    draw = ImageDraw.Draw(image)
    cx, cy = POSITIONS[position]
    dx, dy = (jitter.uniform(-0.04, 0.04), jitter.uniform(-0.04, 0.04)) if jitter else (0, 0)
    cx, cy, r = (cx + dx) * side, (cy + dy) * side, SIZES[size] * side / 2
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    elif shape == "cross":
        draw.rectangle([cx - r, cy - r / 3, cx + r, cy + r / 3], fill=fill)
        draw.rectangle([cx - r / 3, cy - r, cx + r / 3, cy + r], fill=fill)
    else:  # a bar: wide and low
        draw.rectangle([cx - r, cy - r / 2.5, cx + r, cy + r / 2.5], fill=fill)
    return image


def make_set(folder: Path, count: int, seed: int = 0, side: int = 64, layout: str = "csv") -> Path:
    """count images with captions under folder; returns the CSV (layout "csv") or the folder ("sidecar")."""
    folder.mkdir(parents=True, exist_ok=True)
    combos = list(itertools.product(SHAPES, COLOURS, SIZES, BACKGROUNDS, POSITIONS))
    rng = random.Random(seed)
    rng.shuffle(combos)
    rows = []
    for i in range(count):
        parts = combos[i % len(combos)]
        name = f"shape-{i:05d}.png"
        render(*parts, side=side, jitter=rng).save(folder / name)
        rows.append((name, caption(*parts)))
        if layout == "sidecar":
            (folder / name).with_suffix(".txt").write_text(caption(*parts) + "\n")
    if layout == "sidecar":
        return folder
    table = folder / "captions.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filepath", "title"])
        writer.writerows(rows)
    return table
