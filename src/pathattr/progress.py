"""Progress bars for long calls: ``progress=True | False | "auto"``.

``"auto"`` (the default a method should use) shows a bar only when standard error is a terminal, and only once
the work has run for ``delay`` seconds (2 by default), so short calls and logs, CI and notebooks without a
terminal stay quiet; ``True`` always shows one (``tqdm`` when installed, else a plain text line), ``False`` never
does. The environment variable ``PATHATTR_PROGRESS`` (``0``/``1``) overrides ``"auto"``. When off, the helpers
return a shared do-nothing object (or the iterable itself), so a disabled bar costs one attribute call per
update and tqdm is never imported.

How a method uses it (the hook for sequential paths, NoiseTunnel, metrics)::

    from pathattr.progress import progress_bar

    def explain(self, inputs, ..., progress="auto"):
        with progress_bar(total=n_steps, desc=self.name, enabled=progress, unit="step") as bar:
            for step in range(n_steps):
                ...                      # one batched model call
                bar.update(1)

    for chunk in track(chunks, desc="deletion", enabled=progress):   # or wrap an iterable
        ...

Without touching a method, `model_calls` shows the progress of any call by counting the rows that go
through the model's forward (used by ``pathattr explain`` and `pathattr.nlp.explain_text`)::

    with model_calls(model, desc="ig2", enabled=True):
        pathattr.IG2(model, model.classifier).explain(x, refs)
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, TypeVar

__all__ = ["ProgressType", "is_enabled", "model_calls", "progress_bar", "track"]

ProgressType = bool | str | None
T = TypeVar("T")


def is_enabled(progress: ProgressType = "auto", file: TextIO | None = None) -> bool:
    """Whether a bar is shown: ``True``/``False`` as given (``None`` = off); ``"auto"``: ``PATHATTR_PROGRESS``
    if set, else whether ``file`` (default ``sys.stderr``) is a terminal."""
    if progress is None or progress is False:
        return False
    if progress is True:
        return True
    if progress != "auto":
        raise ValueError(f"`progress` must be True, False or 'auto', got {progress!r}")
    env = os.environ.get("PATHATTR_PROGRESS", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    stream = file if file is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


class _Null:
    """The disabled bar: every method does nothing."""

    __slots__ = ()
    n = 0

    def update(self, n: int = 1) -> None:
        return None

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        return None

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        return None

    def close(self) -> None:
        return None

    def __enter__(self) -> _Null:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


NULL = _Null()


class _TextBar:
    """A dependency-free bar (used when tqdm is not installed): one line, rewritten in place at most every
    ``interval`` seconds, after ``delay`` seconds."""

    def __init__(self, total: int | None, desc: str, unit: str, file: TextIO, delay: float,
                 interval: float = 0.5) -> None:
        self.total, self.desc, self.unit, self.file = total, desc, unit, file
        self.n = 0
        self.postfix = ""
        self.start = time.perf_counter()
        self.delay, self.interval = delay, interval
        self._last = -1.0
        self._shown = False

    def _render(self, final: bool = False) -> None:
        elapsed = time.perf_counter() - self.start
        if not final and (elapsed < self.delay or elapsed - self._last < self.interval):
            return
        if final and not self._shown and elapsed < self.delay:
            return
        self._last = elapsed
        self._shown = True
        if self.total:
            frac = min(1.0, self.n / self.total)
            bar = "#" * int(20 * frac) + "-" * (20 - int(20 * frac))
            head = f"{self.desc}: {100 * frac:3.0f}% [{bar}] {self.n}/{self.total} {self.unit}s"
        else:
            head = f"{self.desc}: {self.n} {self.unit}s"
        rate = self.n / elapsed if elapsed > 0 else 0.0
        line = f"{head} [{elapsed:.0f} s, {rate:.2f} {self.unit}/s]" + (f" {self.postfix}" if self.postfix else "")
        self.file.write("\r" + line + ("\n" if final else ""))
        self.file.flush()

    def update(self, n: int = 1) -> None:
        self.n += n
        self._render()

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def close(self) -> None:
        self._render(final=True)

    def __enter__(self) -> _TextBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(
    total: int | None = None,
    desc: str = "pathattr",
    enabled: ProgressType = "auto",
    unit: str = "step",
    file: TextIO | None = None,
    delay: float | None = None,
    leave: bool = False,
) -> Any:
    """A progress bar (context manager with ``update(n)``, ``set_postfix_str``, ``set_description``,
    ``close``), or the shared do-nothing bar when `is_enabled` says no.

    Args:
        total: expected number of updates (None: unknown).
        desc: label (e.g. the method's name).
        enabled: ``True``, ``False``/``None`` or ``"auto"``.
        unit: what one update is (``"step"``, ``"sample"``, ``"example"``).
        file: where to write (default ``sys.stderr``).
        delay: seconds before the bar appears (default 2 for ``"auto"``, 0 for ``True``).
        leave: keep the finished bar on screen.
    """
    stream = file if file is not None else sys.stderr
    if not is_enabled(enabled, stream):
        return NULL
    wait = delay if delay is not None else (2.0 if enabled == "auto" else 0.0)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _TextBar(total, desc, unit, stream, wait)
    return tqdm(total=total, desc=desc, unit=unit, file=stream, delay=wait, leave=leave, dynamic_ncols=True)


def track(
    iterable: Iterable[T],
    total: int | None = None,
    desc: str = "pathattr",
    enabled: ProgressType = "auto",
    unit: str = "step",
    file: TextIO | None = None,
    delay: float | None = None,
) -> Iterable[T]:
    """``iterable`` with a bar that advances per item; the iterable itself when the bar is off."""
    stream = file if file is not None else sys.stderr
    if not is_enabled(enabled, stream):
        return iterable
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    return _tracked(iterable, progress_bar(total, desc, enabled, unit, stream, delay))


def _tracked(iterable: Iterable[T], bar: Any) -> Iterator[T]:
    with bar:
        for item in iterable:
            yield item
            bar.update(1)


@contextlib.contextmanager
def model_calls(
    module: Any,
    desc: str = "pathattr",
    enabled: ProgressType = "auto",
    total: int | None = None,
    unit: str = "row",
    file: TextIO | None = None,
    delay: float | None = None,
) -> Iterator[Any]:
    """A bar that advances by the batch size of every forward call of ``module`` (an ``nn.Module``) inside the
    block: progress for any method without changing it. The hook is removed on exit, also after errors; when
    the bar is off (or ``module`` is not a module) no hook is registered."""
    bar = progress_bar(total, desc, enabled, unit, file, delay)
    register = getattr(module, "register_forward_hook", None)
    if bar is NULL or register is None:
        yield bar
        return

    def hook(mod: Any, args: tuple, output: Any) -> None:
        first = args[0] if args else None
        shape = getattr(first, "shape", None)
        bar.update(int(shape[0]) if shape else 1)

    handle = register(hook)
    try:
        with bar:
            yield bar
    finally:
        handle.remove()
