"""What ``vortex-shapes`` was trained to draw: its colours, shapes, positions and prompt grammar.

One source of truth for ``scripts/train_shapes.py`` (which draws these scenes and trains on
them), ``scripts/check_shapes.py`` (which renders prompts and classifies what came out) and the
tests. Torch- and numpy-free.

A scene is an object of one colour and shape on a background of another colour, at one of five
positions; its prompt says so, and says where unless it is the centre::

    a red circle on a blue background                  (centre)
    a red circle on a blue background in the center    (the same scene)
    a yellow star on a black background at the left
    an orange square on a white background at the top
    a white star on an orange background in the center

>>> prompt(Scene("red", "circle", "blue", "left"))
'a red circle on a blue background at the left'
>>> prompt(Scene("red", "circle", "blue", "center"), say_position=False)
'a red circle on a blue background'
"""

from __future__ import annotations

from itertools import product
from typing import NamedTuple

#: The palette, as sRGB 0-255. Object and background are always different colours.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "orange": (245, 140, 20), "yellow": (240, 220, 30), "green": (30, 160, 50),
    "blue": (30, 70, 220), "purple": (140, 50, 190), "white": (245, 245, 245), "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle", "star")
#: Where the object's centre sits, as fractions of the image's width and height.
POSITIONS: dict[str, tuple[float, float]] = {
    "center": (0.5, 0.5), "left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75),
}
#: The position phrase of each position (``center`` may also go unsaid).
PHRASES = {"center": "in the center", "left": "at the left", "right": "at the right",
           "top": "at the top", "bottom": "at the bottom"}


class Scene(NamedTuple):
    color: str       # the object's colour
    shape: str
    background: str  # the background's colour
    position: str = "center"


def prompt(scene: Scene, *, say_position: bool = True) -> str:
    """The scene's prompt; the centre's phrase is left out when ``say_position`` is false."""
    text = f"{_article(scene.color)} {scene.color} {scene.shape} on {_article(scene.background)} {scene.background} background"
    if say_position or scene.position != "center":
        text += " " + PHRASES[scene.position]
    return text


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def all_scenes() -> list[Scene]:
    """Every scene the model was trained on (8 x 7 colour pairs x 4 shapes x 5 positions = 1120)."""
    return [Scene(c, s, b, p) for c, s, b, p in product(COLORS, SHAPES, COLORS, POSITIONS) if c != b]
