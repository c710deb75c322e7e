"""The feature-visualisation grid: each unit's synthetic image beside the dataset images that
activate it most, labelled with layer, unit, PoZ, kept/pruned status and activation ratio."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxprune.outputs import write_atomic


def _resize(img: np.ndarray, side: int) -> np.ndarray:
    """Nearest-neighbour resize of ``img [h, w, c]`` to ``side × side`` (display only)."""
    h, w = img.shape[:2]
    rows = (np.arange(side) * h // side).clip(0, h - 1)
    cols = (np.arange(side) * w // side).clip(0, w - 1)
    return img[rows][:, cols]


def tile(synthetic: np.ndarray, examples: Sequence[np.ndarray], side: int = 128) -> np.ndarray:
    """One unit's tile ``[side, side + cols·side/2, 3]`` in [0, 1]: the synthetic image, then
    the dataset examples at half size in two rows (white where fewer)."""
    def rgb(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, np.float32)
        a = a / 255.0 if a.max() > 1.0 else a
        return np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a

    half = side // 2
    cols = max(1, -(-len(examples) // 2))
    out = np.ones((side, side + cols * half, 3), np.float32)
    out[:, :side] = _resize(rgb(synthetic), side)
    for i, ex in enumerate(examples):
        r, c = i % 2, i // 2
        out[r * half:(r + 1) * half, side + c * half:side + (c + 1) * half] = _resize(rgb(ex), half)
    return out


def plot_grid(tiles: Sequence[np.ndarray], labels: Sequence[str], path: str | Path,
              title: str = "", columns: int = 4) -> Path:
    """Write the tiles in a grid of ``columns`` per row, each titled by its label, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(tiles)
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    aspect = tiles[0].shape[1] / tiles[0].shape[0]
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * aspect * columns, 2.6 * rows),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, t, label in zip(axes.ravel(), tiles, labels, strict=False):
        ax.imshow(np.clip(t, 0.0, 1.0), interpolation="nearest")
        ax.set_title(label, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    try:
        return write_atomic(path, lambda tmp: _save_palette_png(fig, tmp))
    finally:
        plt.close(fig)


def unit_label(layer: str, unit: int, poz: float | None, status: str | None,
               ratio: float | None) -> str:
    """``"conv_head 417 · PoZ 0.12 · kept\\n×5.3 mean"``: what a tile's title says."""
    parts = [f"{layer} {unit}"]
    if poz is not None:
        parts.append(f"PoZ {poz:.2f}")
    if status is not None:
        parts.append(status)
    second = "" if ratio is None else (f"\n×{ratio:.1f} its mean on the images"
                                       if np.isfinite(ratio) else "\nnever fires on the images")
    return " · ".join(parts) + second


def _save_palette_png(fig, path) -> None:
    """``fig`` as an 80-dpi PNG quantised to 256 colours (a grid of photographs saved in full
    colour weighs over 1 MB; the palette keeps it near 600 kB)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB")
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, format="PNG", optimize=True)
