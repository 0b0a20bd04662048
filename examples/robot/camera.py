"""Simulated camera: 640x480 RGB frames of coloured blobs, one per timer tick (30 Hz).

Each frame depends only on its index: four discs (two red, one green, one blue) move on
Lissajous paths and swell and shrink over a dark background. Output ``image``: a flat ``uint8`` Arrow array of
``height * width * 3`` bytes with metadata ``width``, ``height``, ``encoding="rgb8"`` and
``frame`` (the index, starting at 0).
"""

import math

import numpy as np
import pyarrow as pa

from dora import Node

WIDTH, HEIGHT = 640, 480
BACKGROUND = 30
# colour, radius (px), centre (x, y) at frame 0 as fractions, amplitudes (px), periods (frames)
BLOBS = (
    ((230, 40, 40), 36, (0.30, 0.45), (170, 110), (150, 210)),
    ((40, 220, 60), 30, (0.70, 0.35), (150, 90), (240, 120)),
    ((50, 70, 230), 42, (0.55, 0.70), (200, 70), (300, 180)),
    ((230, 40, 40), 22, (0.15, 0.20), (60, 50), (90, 135)),
)


def blob_centres(frame: int) -> list[tuple[int, int]]:
    """Pixel centre of every blob at ``frame``: a pure function of the frame index."""
    centres = []
    for _, _, (fx, fy), (ax, ay), (px, py) in BLOBS:
        x = fx * WIDTH + ax * math.sin(2 * math.pi * frame / px)
        y = fy * HEIGHT + ay * math.sin(2 * math.pi * frame / py + 0.7)
        centres.append((round(x), round(y)))
    return centres


def blob_radius(index: int, frame: int) -> int:
    """Radius of blob ``index`` at ``frame``: it swells and shrinks as if coming closer."""
    base = BLOBS[index][1]
    return round(base * (1 + 0.45 * math.sin(2 * math.pi * frame / 270 + index)))


def render(frame: int, out: np.ndarray) -> np.ndarray:
    """Draw frame ``frame`` into ``out`` (HEIGHT x WIDTH x 3, uint8) and return it."""
    out.fill(BACKGROUND)
    for i, (cx, cy) in enumerate(blob_centres(frame)):
        colour, radius = BLOBS[i][0], blob_radius(i, frame)
        x0, x1 = max(cx - radius, 0), min(cx + radius + 1, WIDTH)
        y0, y1 = max(cy - radius, 0), min(cy + radius + 1, HEIGHT)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius * radius
        out[y0:y1, x0:x1][disc] = colour
    return out


def main() -> None:
    node = Node()
    image = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    frame = 0
    for event in node:
        if event["type"] == "STOP":
            break
        if event["type"] != "INPUT":
            continue
        render(frame, image)
        meta = {"width": WIDTH, "height": HEIGHT, "encoding": "rgb8", "frame": frame}
        node.send_output("image", pa.array(image.ravel()), meta)
        frame += 1


if __name__ == "__main__":
    main()
