"""Token pictures: signed scores as coloured tokens, in HTML (notebooks, reports) and matplotlib.

Colours are diverging and symmetric around 0: red = the token raises the explained class's score, blue =
lowers it, white = no effect; the colour scale is ``max |score|`` of each row unless ``scale`` is given, and the
legend states it. Special tokens (``[CLS]``, ``[SEP]``) are shown in grey italics; WordPiece continuations
(``##ing``) are joined to the previous token visually. matplotlib is imported lazily and no backend is chosen.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

__all__ = ["signed_colour", "tokens_html", "plot_tokens"]

_POS = np.array([178, 24, 43]) / 255  # RdBu ends: red (positive) and blue (negative)
_NEG = np.array([33, 102, 172]) / 255


def signed_colour(value: float) -> tuple[float, float, float]:
    """RGB in [0, 1] for ``value`` in [-1, 1]: white at 0, red towards +1, blue towards -1."""
    v = float(np.clip(value, -1.0, 1.0))
    end = _POS if v >= 0 else _NEG
    rgb = 1.0 + abs(v) * (end - 1.0)
    return float(rgb[0]), float(rgb[1]), float(rgb[2])


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb)


def _rows(tokens: Sequence[Any], scores: Any) -> tuple[list[list[str]], list[np.ndarray]]:
    if tokens and isinstance(tokens[0], str):
        tokens, scores = [tokens], [scores]
    rows_s = []
    for s in scores:
        a = s.detach().double().cpu().numpy() if isinstance(s, Tensor) else np.asarray(s, dtype=float)
        rows_s.append(a.reshape(-1))
    rows_t = [list(t) for t in tokens]
    for t, s in zip(rows_t, rows_s):
        if len(t) != s.size:
            raise ValueError(f"{len(t)} tokens but {s.size} scores")
    return rows_t, rows_s


def _scale(s: np.ndarray, special: Sequence[bool] | None, scale: float | None) -> float:
    if scale is not None:
        return float(scale)
    mask = np.ones(s.size, bool) if special is None else ~np.asarray(special, bool)
    vals = np.abs(s[mask]) if mask.any() else np.abs(s)
    m = float(vals.max()) if vals.size else 0.0
    return m if m > 0 else 1.0


def _display(token: str) -> tuple[str, bool]:
    """Token text for display and whether it continues the previous word (WordPiece ``##``, SentencePiece)."""
    if token.startswith("##"):
        return token[2:], True
    if token.startswith(("\u2581", "\u0120")):  # SentencePiece / byte-level BPE word starts
        return token[1:], False
    return token, False


def tokens_html(
    tokens: Sequence[str] | Sequence[Sequence[str]],
    scores: Any,
    special: Sequence[bool] | Sequence[Sequence[bool]] | None = None,
    captions: Sequence[str] | None = None,
    scale: float | None = None,
    title: str | None = None,
) -> str:
    """A self-contained HTML fragment: one line of coloured tokens per example, with a legend.

    Args:
        tokens: one example's tokens or a list of them.
        scores: matching signed scores (tensors, arrays or lists).
        special: which tokens are special (shown grey, left out of the colour scale).
        captions: a line above each example (e.g. the class and probability).
        scale: the score shown as full colour (default: ``max |score|`` of each example's ordinary tokens).
        title: a heading.
    """
    rows_t, rows_s = _rows(tokens, scores)
    if special is not None and special and isinstance(special[0], bool):
        special = [special]  # type: ignore[list-item]
    parts = ['<div class="pathattr-tokens" style="font-family: sans-serif; line-height: 2.1;">']
    if title:
        parts.append(f"<h4>{html.escape(title)}</h4>")
    for i, (toks, s) in enumerate(zip(rows_t, rows_s)):
        sp = list(special[i]) if special is not None else [False] * len(toks)  # type: ignore[index]
        m = _scale(s, sp, scale)
        if captions:
            parts.append(f'<div style="font-size: 0.85em; color: #444;">{html.escape(captions[i])} '
                         f'&middot; colour scale &plusmn;{m:.3g}</div>')
        line = []
        for tok, v, is_special in zip(toks, s, sp):
            text, cont = _display(tok)
            tip = html.escape(f"{tok}: {v:+.4g}")
            space = "" if cont else " "
            if is_special:
                line.append(f'{space}<span title="{tip}" style="color: #999; font-style: italic; '
                            f'font-size: 0.8em;">{html.escape(text)}</span>')
                continue
            colour = _hex(signed_colour(v / m))
            fg = "#fff" if abs(v / m) > 0.6 else "#000"
            pad = "0 1px" if cont else "0 3px"
            line.append(f'{space}<span title="{tip}" style="background-color: {colour}; color: {fg}; '
                        f'padding: {pad}; border-radius: 3px;">{html.escape(text)}</span>')
        parts.append("<div>" + "".join(line).strip() + "</div>")
    stops = ", ".join(_hex(signed_colour(v)) for v in np.linspace(-1, 1, 9))
    parts.append(
        '<div style="margin-top: 6px; font-size: 0.8em; color: #444;">'
        '<span>&minus; lowers the class score</span> '
        f'<span style="display: inline-block; width: 160px; height: 10px; vertical-align: middle; '
        f'background: linear-gradient(to right, {stops}); border: 1px solid #ccc;"></span> '
        '<span>raises it +</span> &middot; <i style="color: #999;">grey</i> = special token; '
        'hover a token for its score</div>'
    )
    parts.append("</div>")
    return "\n".join(parts)


def plot_tokens(
    tokens: Sequence[str] | Sequence[Sequence[str]],
    scores: Any,
    special: Sequence[bool] | Sequence[Sequence[bool]] | None = None,
    captions: Sequence[str] | None = None,
    scale: float | None = None,
    title: str | None = None,
    width: float = 9.0,
    path: str | Path | None = None,
    fontsize: float = 11.0,
):
    """A matplotlib figure: each example's tokens as coloured boxes, wrapped to ``width`` inches, with a colour
    bar (shared scale: ``scale`` or the largest ``max |score|`` of the examples). Saved to ``path`` if given.
    """
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    rows_t, rows_s = _rows(tokens, scores)
    if special is not None and special and isinstance(special[0], bool):
        special = [special]  # type: ignore[list-item]
    sp_rows = [list(special[i]) if special is not None else [False] * len(t)  # type: ignore[index]
               for i, t in enumerate(rows_t)]
    m = scale if scale is not None else max(_scale(s, sp, None) for s, sp in zip(rows_s, sp_rows))
    cmap = LinearSegmentedColormap.from_list("pathattr_signed", [signed_colour(v) for v in np.linspace(-1, 1, 21)])

    # lay out with the renderer's real text extents (inches), wrapping at ``width``
    n_lines = sum(1 + (1 if captions else 0) + max(1, int(sum(len(t) + 2 for t in toks) * fontsize / 72 * 0.6
                                                          // width) + 1) for toks in rows_t)
    line_h = fontsize / 72 * 2.1
    fig = plt.figure(figsize=(width + 0.4, n_lines * line_h + 1.2))
    renderer = fig.canvas.get_renderer()
    placed: list[tuple[Any, float, float]] = []  # (text artist, x, line)

    def measure(artist: Any) -> float:
        return artist.get_window_extent(renderer).width / fig.dpi

    line = 0.0
    for r, (toks, s, sp) in enumerate(zip(rows_t, rows_s, sp_rows)):
        if captions:
            placed.append((fig.text(0, 0, captions[r], fontsize=fontsize * 0.8, color="#333", va="center"), 0.0,
                           line))
            line += 1
        x = 0.0
        for tok, v, is_sp in zip(toks, s, sp):
            text, cont = _display(tok)
            if is_sp:
                artist = fig.text(0, 0, text, fontsize=fontsize * 0.75, color="#999", style="italic", va="center")
            else:
                c = signed_colour(v / m)
                artist = fig.text(0, 0, text, fontsize=fontsize, va="center",
                                  color="white" if abs(v / m) > 0.6 else "black",
                                  bbox={"boxstyle": "round,pad=0.2", "facecolor": c, "edgecolor": "none"})
            w = measure(artist)
            gap = 0.02 if cont else fontsize / 72 * 0.55
            if x > 0 and x + gap + w > width:
                line += 1
                x, gap = 0.0, 0.0
            placed.append((artist, x + (gap if x > 0 else 0.0), line))
            x += (gap if x > 0 else 0.0) + w
        line += 1.5
    height = line * line_h + 1.1
    fig.set_size_inches(width + 0.4, height)
    for artist, x, ln in placed:
        artist.set_position(((0.2 + x) / (width + 0.4), 1 - (0.25 + (ln + 0.5) * line_h) / height))
    cax = fig.add_axes((0.03, 0.55 / height, 0.45, 0.16 / height))
    cb = fig.colorbar(ScalarMappable(norm=Normalize(-m, m), cmap=cmap), cax=cax, orientation="horizontal")
    cb.set_label("token score (sum over the embedding): red raises the class score, blue lowers it",
                 fontsize=fontsize * 0.7)
    cb.ax.tick_params(labelsize=fontsize * 0.65)
    if title:
        fig.suptitle(title, fontsize=fontsize, x=0.02, ha="left")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
    return fig

