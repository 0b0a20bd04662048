"""Blob detector: finds red, green and blue blobs in ``rgb8`` frames.

Thresholds each colour on a 4x downsampled copy of the frame, splits every colour mask
into 4-connected components and outputs one box per component, in full-resolution pixels.
Output ``bboxes``: a StructArray with fields ``x_min, y_min, x_max, y_max`` (int32,
inclusive), ``label`` (string) and ``score`` (float32, how disc-like the blob is: 1.0 for a
full disc), sorted by label then position; metadata ``frame`` is passed through. The output
depends only on the input frame.
"""

import numpy as np
import pyarrow as pa

from dora import Node

STEP = 4  # downsampling factor for the blob search
MIN_PIXELS = 4  # smaller components (in downsampled pixels) are noise
DISC_FILL = np.pi / 4  # a disc fills pi/4 of its bounding box
SCHEMA = pa.struct(
    [
        ("x_min", pa.int32()),
        ("y_min", pa.int32()),
        ("x_max", pa.int32()),
        ("y_max", pa.int32()),
        ("label", pa.string()),
        ("score", pa.float32()),
    ]
)


def colour_masks(small: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean mask per colour: that channel bright, the other two dark."""
    r, g, b = (small[..., c].astype(np.int16) for c in range(3))
    return {
        "red": (r > 150) & (g < 100) & (b < 100),
        "green": (g > 150) & (r < 100) & (b < 100),
        "blue": (b > 150) & (r < 100) & (g < 100),
    }


def components(mask: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """4-connected components of ``mask`` as (x_min, y_min, x_max, y_max, n_pixels)."""
    todo = {(int(y), int(x)) for y, x in np.argwhere(mask)}
    found = []
    while todo:
        start = min(todo)  # deterministic order
        todo.remove(start)
        stack = [start]
        ys, xs = [], []
        while stack:
            y, x = stack.pop()
            ys.append(y)
            xs.append(x)
            for nb in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if nb in todo:
                    todo.remove(nb)
                    stack.append(nb)
        found.append((min(xs), min(ys), max(xs), max(ys), len(xs)))
    return found


def detect(image: np.ndarray) -> list[dict]:
    """Boxes for one HxWx3 uint8 frame, in full-resolution pixel coordinates."""
    small = image[::STEP, ::STEP]
    boxes = []
    for label, mask in colour_masks(small).items():
        for x0, y0, x1, y1, n in components(mask):
            if n < MIN_PIXELS:
                continue
            fill = n / ((x1 - x0 + 1) * (y1 - y0 + 1))
            boxes.append(
                {
                    "x_min": x0 * STEP,
                    "y_min": y0 * STEP,
                    "x_max": x1 * STEP + STEP - 1,
                    "y_max": y1 * STEP + STEP - 1,
                    "label": label,
                    "score": min(1.0, fill / DISC_FILL),
                }
            )
    boxes.sort(key=lambda b: (b["label"], b["x_min"], b["y_min"]))
    return boxes


def main() -> None:
    node = Node()
    for event in node:
        if event["type"] == "STOP":
            break
        if event["type"] != "INPUT" or event["id"] != "image":
            continue
        meta = event["metadata"]
        if meta.get("encoding", "rgb8") != "rgb8":
            raise ValueError(f"detector expects encoding rgb8, got {meta['encoding']!r}")
        shape = (int(meta["height"]), int(meta["width"]), 3)
        image = event["value"].to_numpy(zero_copy_only=False).reshape(shape)
        boxes = pa.array(detect(image), type=SCHEMA)
        del image, event  # release the frame before waiting for the next one
        node.send_output("bboxes", boxes, {"frame": int(meta["frame"])})


if __name__ == "__main__":
    main()
