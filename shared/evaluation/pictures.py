"""Pictures of a process and its samples: captioned, labelled PNGs (PIL, its built-in default font).

Three pictures, made by a `sample` job on request (`pictures`) and by every
`evaluate` job:

- `scale_space.png`: the forward scale-space, a few data images (one row
  each, picked as the forward trajectory picks them) at 8 times from 0 to T,
  u_t = A_t u_0 + sigma_t z with one z per row for every t (columns labelled
  with the index i and the time t);
- `reverse_trajectory.png`: the reverse chain of a few samples, two rows per
  sample: the state u_t and the denoiser's estimate u0_hat of u_0 from it, at
  about 8 of the visited indices (at i = 0 the state is the sample, and it is
  its own estimate);
- `sample_grid.png`: the first samples (at most 64) as a grid, each row
  labelled with the id of its first sample.

Every picture uses one grey scale (`grey_levels`, also grid.png's): a value
v is shown as round((clip(v, -1, 1) + 1) * 127.5), -1 black, +1 white, the
data's range; values outside [-1, 1] (noise, or the last reverse step's small
overshoot: heat's samples reach about +-1.11) are clipped, and each caption
says what share of the pixels shown was clipped. Images are enlarged by an
integer factor (nearest neighbour) to at least 64 pixels a side. The canvas is
RGB with a light blue-grey background, so the grey images stand apart from it.
Each PNG carries its caption (`Description`) and its layout (`layout`: JSON
with the pixel position of every row and column of images, the size of an
image and the enlargement) as text chunks.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import torch
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from scalespace.denoisers.base import Denoiser
from scalespace.evaluation.forward_trajectory import eval_indices
from scalespace.noise import Stream, normal, uniform_int
from scalespace.processes.base import Process
from scalespace.sampling.pipeline import generate
from scalespace.sampling.schedule import respace

#: artifact names, in the order the report shows them
SCALE_SPACE = "scale_space.png"
REVERSE_TRAJECTORY = "reverse_trajectory.png"
SAMPLE_GRID = "sample_grid.png"
PICTURES = (SCALE_SPACE, REVERSE_TRAJECTORY, SAMPLE_GRID)

#: the one grey scale of every picture: values in GREY_RANGE map linearly to 0..255, values outside are clipped
GREY_RANGE = (-1.0, 1.0)
GREY_TEXT = "grey: -1 black, +1 white, linear; values outside [-1, 1] clipped"

FORWARD_IMAGES = 4
FORWARD_TIMES = 8
REVERSE_SAMPLES = 4
REVERSE_COLUMNS = 8
GRID_MAX = 64
#: images are enlarged (nearest neighbour) to at least this many pixels a side
MIN_CELL = 64
#: the sample grid's images: at least this many pixels a side
GRID_CELL = 96
RAMP_W = 256

BACKGROUND = (236, 240, 246)  # not a grey: images stand apart from the canvas
TEXT = (24, 30, 42)
MARGIN = 10
GAP = 4
FONT_SIZE = 13


def grey_levels(x: torch.Tensor) -> torch.Tensor:
    """The grey scale: values (any shape) as uint8, round((clip(v, -1, 1) + 1) * 127.5)."""
    lo, hi = GREY_RANGE
    return x.detach().float().cpu().clamp(lo, hi).sub(lo).mul(255.0 / (hi - lo)).round().to(torch.uint8)


@dataclass(frozen=True)
class Caption:
    """What every picture's caption names: the process, data, model, sampler, reverse steps and seed."""

    process: str
    T: int
    data: str
    model: str
    sampler: str
    steps: int
    seed: int

    def line(self) -> str:
        return (f"process {self.process} (T = {self.T}), data {self.data}, model {self.model}, "
                f"sampler {self.sampler}, {self.steps} reverse steps, seed {self.seed}")


@lru_cache(maxsize=1)
def _font() -> Any:
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except TypeError:  # no FreeType: the bitmap font, one size
        return ImageFont.load_default()


def _text_size(text: str) -> tuple[int, int]:
    left, top, right, bottom = _font().getbbox(text)
    return int(math.ceil(right)), int(math.ceil(bottom))


def _line_height() -> int:
    return _text_size("Ag|")[1] + 4


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        trial = f"{line} {word}" if line else word
        if line and _text_size(trial)[0] > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + [line] if line else lines


def _cell(x: torch.Tensor, scale: int) -> Image.Image:
    """One image (C, H, W) on the grey scale, enlarged `scale` times."""
    g = grey_levels(x)
    img = Image.fromarray(g[0].numpy(), "L") if g.shape[0] != 3 else Image.fromarray(g.permute(1, 2, 0).numpy(), "RGB")
    return img.convert("RGB").resize((img.width * scale, img.height * scale), Image.NEAREST)


def _clipped_share(cells: list[list[torch.Tensor | None]]) -> float:
    lo, hi = GREY_RANGE
    vals = [c.detach().float().cpu() for row in cells for c in row if c is not None]
    if not vals:
        return 0.0
    flat = torch.cat([v.reshape(-1) for v in vals])
    return float(((flat < lo) | (flat > hi)).float().mean())


def table_picture(
    cells: list[list[torch.Tensor | None]],
    title: str,
    caption: Caption | None,
    row_labels: list[str] | None = None,
    col_labels: list[list[str]] | None = None,
    group_rows: int = 1,
    note: str = "",
    min_cell: int = MIN_CELL,
) -> bytes:
    """Images (C, H, W) in rows and columns with labels and a caption above them, as PNG bytes.

    `group_rows`: rows per group, with a wider gap between groups; `note` ends the caption."""
    n_rows, n_cols = len(cells), max(len(r) for r in cells)
    shape = next(c.shape for r in cells for c in r if c is not None)
    h, w = int(shape[-2]), int(shape[-1])
    scale = max(1, math.ceil(min_cell / max(h, w)))
    cw, ch = w * scale, h * scale
    lh = _line_height()
    row_labels = row_labels or [""] * n_rows
    col_labels = col_labels or []
    label_w = max([_text_size(line)[0] for lab in row_labels for line in lab.split("\n")] + [0])
    label_w = label_w + 8 if label_w else 0
    col_w = max([cw] + [_text_size(line)[0] + 6 for lab in col_labels for line in lab])
    head_lines = max((len(lab) for lab in col_labels), default=0)
    grid_w = label_w + n_cols * col_w + (n_cols - 1) * GAP
    legend = "+1  the grey scale of every picture"
    width = max(grid_w, 24 + RAMP_W + 4 + _text_size(legend)[0], 520) + 2 * MARGIN
    share = _clipped_share(cells)
    text = [title] + ([caption.line()] if caption else []) + [f"{GREY_TEXT} ({100 * share:.1f}% of the pixels shown)"]
    if note:
        text.append(note)
    lines = [line for para in text for line in _wrap(para, width - 2 * MARGIN)]
    caption_h = MARGIN + len(lines) * lh + 6
    head_h = head_lines * lh + (4 if head_lines else 0)
    group_gap = 3 * GAP if group_rows > 1 else 0
    ys = []
    y = caption_h + head_h
    for r in range(n_rows):
        if r and r % group_rows == 0:
            y += group_gap
        ys.append(y)
        y += ch + GAP
    ramp_h = 12
    height = y - GAP + MARGIN + ramp_h + lh + MARGIN
    xs = [MARGIN + label_w + k * (col_w + GAP) + (col_w - cw) // 2 for k in range(n_cols)]

    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font()
    for k, line in enumerate(lines):
        draw.text((MARGIN, MARGIN + k * lh), line, fill=TEXT, font=font)
    for k, lab in enumerate(col_labels):
        for j, line in enumerate(lab):
            tw = _text_size(line)[0]
            draw.text((xs[k] + (cw - tw) // 2, caption_h + j * lh), line, fill=TEXT, font=font)
    for r, row in enumerate(cells):
        parts = row_labels[r].split("\n") if row_labels[r] else []
        top = ys[r] + (ch - len(parts) * lh) // 2
        for j, line in enumerate(parts):
            draw.text((MARGIN, top + j * lh), line, fill=TEXT, font=font)
        for k, x in enumerate(row):
            if x is not None:
                canvas.paste(_cell(x, scale), (xs[k], ys[r]))
    # the grey scale itself, -1 to +1, under the images
    ramp_y = y - GAP + MARGIN
    ramp_w = RAMP_W
    ramp = torch.linspace(GREY_RANGE[0], GREY_RANGE[1], ramp_w).reshape(1, 1, ramp_w).expand(1, ramp_h, ramp_w)
    canvas.paste(_cell(ramp, 1), (MARGIN + 20, ramp_y))
    draw.text((MARGIN, ramp_y - 2), "-1", fill=TEXT, font=font)
    draw.text((MARGIN + 24 + ramp_w, ramp_y - 2), legend, fill=TEXT, font=font)

    layout = {"cell": [cw, ch], "scale": scale, "image": [h, w], "x": xs,
              "y": ys, "caption_height": caption_h, "grey": "round((clip(v, -1, 1) + 1) * 127.5)"}
    info = PngInfo()
    info.add_text("Description", " ".join(text))
    info.add_text("layout", json.dumps(layout))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _time_label(process: Process, i: int) -> list[str]:
    t = float(process.times()[i])
    return [f"i = {i}", f"t = {round(t)}" if t == round(t) else f"t = {t:.3g}"]


# --- the three pictures -------------------------------------------------------------------


def forward_picture(process: Process, train: torch.Tensor, caption: Caption, seed: int,
                    n_images: int = FORWARD_IMAGES, n_times: int = FORWARD_TIMES) -> bytes:
    """The forward scale-space: rows of data images (picked by (seed, row) as the forward trajectory picks
    them), columns at `n_times` evenly spaced indices from 0 to T, one noise draw z per row for every t."""
    ids = torch.arange(min(n_images, len(train)))
    pick = uniform_int(seed, ids, len(train), Stream.DATA_PICK)
    u0 = train[pick].detach().cpu().to(torch.float64)
    z = normal(seed, ids, 0, process.shape, Stream.FORWARD).to(torch.float64)
    indices = eval_indices(process.T, n_times - 1)
    means = process.marginal_means(u0, indices, ids)
    cells: list[list[torch.Tensor | None]] = [
        [(means[i][r].to(torch.float64).cpu() + process.sigma(i) * z[r]).float() for i in indices] for r in range(len(ids))
    ]
    return table_picture(
        cells,
        f"Forward scale-space of {caption.process} on {caption.data}: u_t = A_t u_0 + sigma_t z, left to right "
        "from the data (i = 0) to T, one noise draw z per row for every t",
        caption, [f"train #{int(p)}" for p in pick], [_time_label(process, i) for i in indices],
    )


class ReverseRecorder:
    """The `on_state` hook of `generate`: keeps the states u_t of the first `n` samples at about `columns` of the
    schedule's indices, and the denoiser's estimate u0_hat of u_0 from each (at i = 0: the state itself).

    It only reads the states: the samples stay what they are without it."""

    def __init__(self, process: Process, denoiser: Denoiser, schedule: list[int], n: int = REVERSE_SAMPLES,
                 columns: int = REVERSE_COLUMNS):
        self.process = process
        self.denoiser = denoiser
        self.n = n
        last = len(schedule) - 1
        pos = sorted({round(k * last / max(columns - 1, 1)) for k in range(columns)})
        self.indices = [schedule[p] for p in pos]
        self._rows: dict[int, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {i: {} for i in self.indices}

    def __call__(self, index: int, u: torch.Tensor, ids: torch.Tensor) -> None:
        if index not in self._rows:
            return
        keep = (ids < self.n).nonzero().reshape(-1)
        if len(keep) == 0:
            return
        x = u[keep.to(u.device)]
        with torch.no_grad():
            est = x if index == 0 else self.denoiser.predict_u0(x, index, ids[keep])
        for k, sid in enumerate(ids[keep].tolist()):
            self._rows[index][sid] = (x[k].detach().float().cpu().clone(), est[k].detach().float().cpu().clone())

    def picture(self, caption: Caption) -> bytes | None:
        ids = sorted(set().union(*(set(r) for r in self._rows.values())))
        if not ids:
            return None
        cells: list[list[torch.Tensor | None]] = []
        labels = []
        for sid in ids:
            got = [self._rows[i].get(sid) for i in self.indices]
            cells.append([g[0] if g else None for g in got])
            cells.append([g[1] if g else None for g in got])
            labels += [f"sample {sid}\nu_t", "u0_hat"]
        return table_picture(
            cells,
            f"Reverse trajectory of {caption.process} on {caption.data}: for each sample, the state u_t (upper row) "
            "and the denoiser's estimate u0_hat of u_0 from it (lower row), from the start state (left) to the "
            "sample at i = 0 (right), where the state is its own estimate",
            caption, labels, [_time_label(self.process, i) for i in self.indices], group_rows=2,
        )


def samples_picture(samples: torch.Tensor, caption: Caption, max_images: int = GRID_MAX, what: str = "") -> bytes:
    """The first `max_images` samples (B, C, H, W) as a square-ish grid; each row labelled with its first id."""
    x = samples[:max_images]
    b = len(x)
    cols = math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    cells: list[list[torch.Tensor | None]] = [[x[r * cols + k] if r * cols + k < b else None for k in range(cols)]
                                              for r in range(rows)]
    shown = f"samples 0 to {b - 1} of {len(samples)}" if b > 1 else f"sample 0 of {len(samples)}"
    return table_picture(
        cells, f"Samples of {caption.process} on {caption.data}: {shown}{what}, row by row", caption,
        [f"#{r * cols}" for r in range(rows)], min_cell=GRID_CELL,
    )


def sample_pictures(process: Process, train: torch.Tensor, samples: torch.Tensor, recorder: ReverseRecorder | None,
                    caption: Caption, seed: int) -> dict[str, bytes]:
    """A sample job's pictures: name -> PNG bytes."""
    out = {SCALE_SPACE: forward_picture(process, train, caption, seed)}
    rev = recorder.picture(caption) if recorder is not None else None
    if rev is not None:
        out[REVERSE_TRAJECTORY] = rev
    out[SAMPLE_GRID] = samples_picture(samples, caption, what=" (samples.npz)")
    return out


def evaluation_pictures(
    process: Process, train: torch.Tensor, denoiser: Denoiser | None, samples: torch.Tensor | None, *,
    data: str, model: str, seed: int, steps: int | None, reverse_mean: str, device: torch.device | str = "cpu",
    batch_size: int = REVERSE_SAMPLES, on_step: Callable[[int, int], None] | None = None,
) -> dict[str, bytes]:
    """An evaluate job's pictures: the forward scale-space; with a denoiser, the reverse trajectory of a short run
    of its own (samples 0..3 by the process's sampler over the reverse checks' steps); with the reverse checks'
    samples, their grid. `on_step(done, total)`: the short run's progress (a job's progress and cancel check)."""
    schedule = respace(process.T, steps)
    caption = Caption(process.name, process.T, data, model, process.default_sampler, len(schedule) - 1, seed)
    out = {SCALE_SPACE: forward_picture(process, train, caption, seed)}
    if denoiser is not None:
        n = min(REVERSE_SAMPLES, max(len(train), 1))
        rec = ReverseRecorder(process, denoiser, schedule, n)
        generate(process, denoiser, n, seed, batch_size=batch_size, steps=steps, reverse_mean=reverse_mean,
                 train=train.to(device), device=device, on_state=rec, on_step=on_step)
        rev = rec.picture(caption)
        if rev is not None:
            out[REVERSE_TRAJECTORY] = rev
    if samples is not None and len(samples):
        out[SAMPLE_GRID] = samples_picture(samples, caption, what=" (the reverse checks' samples)")
    return out


__all__ = [
    "Caption", "GREY_RANGE", "PICTURES", "REVERSE_TRAJECTORY", "ReverseRecorder", "SAMPLE_GRID", "SCALE_SPACE",
    "evaluation_pictures", "forward_picture", "grey_levels", "sample_pictures", "samples_picture", "table_picture",
]
