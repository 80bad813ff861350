"""Draws the quickstart's seed images (simple coloured shapes; no third-party content). Run from the repo root:
python recipes/seeds/draw_quickstart.py"""

from pathlib import Path

from PIL import Image, ImageDraw

SCENES = [  # background, (shape, colour, box as fractions of the image)
    ("skyblue", [("ellipse", "red", (0.15, 0.2, 0.55, 0.75)), ("rectangle", "green", (0.6, 0.45, 0.9, 0.9))]),
    ("white", [("rectangle", "blue", (0.1, 0.1, 0.5, 0.5)), ("ellipse", "yellow", (0.5, 0.4, 0.95, 0.95))]),
    ("gray", [("polygon", "orange", (0.2, 0.8, 0.5, 0.15, 0.8, 0.8))]),
    ("lightgreen", [("ellipse", "purple", (0.3, 0.3, 0.7, 0.7))]),
    ("beige", [("rectangle", "black", (0.05, 0.55, 0.45, 0.95)), ("ellipse", "white", (0.55, 0.05, 0.95, 0.45))]),
    ("navy", [("polygon", "yellow", (0.1, 0.9, 0.3, 0.3, 0.5, 0.9)), ("ellipse", "red", (0.6, 0.3, 0.9, 0.6))]),
]


def draw(background: str, shapes: list, size: tuple[int, int] = (160, 128)) -> Image.Image:
    img = Image.new("RGB", size, background)
    pen = ImageDraw.Draw(img)
    for kind, colour, coords in shapes:
        xy = [c * size[i % 2] for i, c in enumerate(coords)]
        getattr(pen, kind)(xy, fill=colour)
    return img


if __name__ == "__main__":
    out = Path(__file__).parent / "quickstart"
    out.mkdir(exist_ok=True)
    for i, (background, shapes) in enumerate(SCENES):
        draw(background, shapes).save(out / f"scene_{i}.png", optimize=True)
