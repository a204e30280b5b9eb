"""``stopwatch``: how long a call or a block took, as a decorator or a context manager.

The classic exercise kvstore grew from times ``count`` with a decorator that prints how
long each call took. This is that decorator, made reusable::

    from kvstore import stopwatch

    @stopwatch                          # prints "count took 3.41 µs" to stderr per call
    def count(db, food):
        return db.count(food)

    with stopwatch("load") as watch:    # prints "load took 2.91 s" when the block ends
        db.update(pairs)
    watch.seconds                       # 2.91...

Timing uses :func:`time.perf_counter_ns`: monotonic (never goes back when the wall clock is
set) and the highest resolution Python offers. The clock is read as late as possible on
the way in and as early as possible on the way out, so the overhead measured with the call
is a few hundred nanoseconds at most.

Where the report goes, chosen per stopwatch:

- ``file=`` a text stream (default: ``sys.stderr``, looked up at each report);
- ``logger=`` a :class:`logging.Logger` (or adapter), at ``level=`` (default INFO), with
  the message ``"%s took %s"``; the seconds are in the record's ``extra`` as ``seconds``;
- ``callback=`` any ``callback(label, seconds)``.

Given ``logger`` or ``callback``, nothing is printed unless ``file`` is given as well. A
call that raises is reported too (``"count raised KeyError after 3.41 µs"``; callbacks
get the seconds alike) and the exception propagates unchanged.

One :class:`Stopwatch` may decorate any number of functions and be called from any number
of threads: each call keeps its own start time. As a context manager an instance may be
nested in itself, but should not be shared by threads (its ``seconds`` is the last block
timed); give each thread its own.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import IO, Any, ParamSpec, Self, TypeVar, cast, overload

from kvstore.units import format_duration

__all__ = ["Stopwatch", "stopwatch"]

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

Callback = Callable[[str, float], object]
Clock = Callable[[], int]


class Stopwatch:
    """Times calls (as a decorator) or blocks (as a context manager) and reports each.

    ``label``: the name in the report; a decorated function's ``__qualname__`` when None
    (``"block"`` for a context manager). ``clock``: a callable returning integer
    nanoseconds (default :func:`time.perf_counter_ns`; tests pass a fake one).
    """

    __slots__ = ("_starts", "callback", "clock", "file", "label", "level", "logger", "seconds")

    def __init__(
        self,
        label: str | None = None,
        *,
        file: IO[str] | None = None,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        level: int = logging.INFO,
        callback: Callback | None = None,
        clock: Clock = time.perf_counter_ns,
    ) -> None:
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        self.label = label
        self.file = file
        self.logger = logger
        self.level = level
        self.callback = callback
        self.clock = clock
        self.seconds: float | None = None
        """The duration of the last call or block that finished (None before the first)."""
        self._starts: list[int] = []

    # -- reporting ---------------------------------------------------------------------

    def report(self, label: str, seconds: float, error: BaseException | None = None) -> None:
        """Send one timing to the callback, the logger and/or the file."""
        self.seconds = seconds
        if self.callback is not None:
            self.callback(label, seconds)
        took = f"raised {type(error).__name__} after" if error is not None else "took"
        if self.logger is not None:
            self.logger.log(self.level, "%s %s %s", label, took, format_duration(seconds),
                            extra={"seconds": seconds})
        if self.file is not None or (self.callback is None and self.logger is None):
            print(f"{label} {took} {format_duration(seconds)}", file=self.file or sys.stderr, flush=True)

    # -- context manager ---------------------------------------------------------------

    def __enter__(self) -> Self:
        self._starts.append(self.clock())  # last: nothing of ours runs after the start
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        end = self.clock()  # first: nothing of ours runs before the end
        if not self._starts:
            raise RuntimeError("stopwatch: __exit__ without __enter__")
        start = self._starts.pop()
        self.report(self.label or "block", (end - start) / 1e9, exc)

    # -- decorator ---------------------------------------------------------------------

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Decorate ``func``: every call is timed and reported (coroutines when awaited)."""
        if not callable(func):
            raise TypeError(f"stopwatch decorates a callable, not {type(func).__name__}")
        label = self.label or getattr(func, "__qualname__", None) or repr(func)
        clock = self.clock

        if inspect.iscoroutinefunction(func):
            coroutine = cast(Callable[P, Awaitable[Any]], func)

            async def timed_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                start = clock()
                try:
                    result = await coroutine(*args, **kwargs)
                except BaseException as error:
                    self.report(label, (clock() - start) / 1e9, error)
                    raise
                self.report(label, (clock() - start) / 1e9)
                return result

            return cast(Callable[P, R], functools.wraps(func)(timed_async))

        @functools.wraps(func)
        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            start = clock()
            try:
                result = func(*args, **kwargs)
            except BaseException as error:
                end = clock()
                self.report(label, (end - start) / 1e9, error)
                raise
            end = clock()
            self.report(label, (end - start) / 1e9)
            return result

        return timed

    def __repr__(self) -> str:
        return f"<Stopwatch {self.label or '(unnamed)'!s} last={self.seconds!r}>"


@overload
def stopwatch(func: F, /) -> F: ...


@overload
def stopwatch(
    label: str | None = None,
    /,
    *,
    file: IO[str] | None = None,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    level: int = logging.INFO,
    callback: Callback | None = None,
    clock: Clock = time.perf_counter_ns,
) -> Stopwatch: ...


def stopwatch(
    func_or_label: Callable[..., Any] | str | None = None,
    /,
    *,
    file: IO[str] | None = None,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    level: int = logging.INFO,
    callback: Callback | None = None,
    clock: Clock = time.perf_counter_ns,
) -> Any:
    """A :class:`Stopwatch`; or, used bare as ``@stopwatch``, the decorated function.

    ``@stopwatch``, ``@stopwatch()``, ``@stopwatch("label", logger=log)`` decorate;
    ``with stopwatch("label") as watch:`` times a block (then ``watch.seconds``).
    """
    options: dict[str, Any] = {"file": file, "logger": logger, "level": level, "callback": callback, "clock": clock}
    if func_or_label is None or isinstance(func_or_label, str):
        return Stopwatch(func_or_label, **options)
    if callable(func_or_label):
        return Stopwatch(None, **options)(func_or_label)
    raise TypeError(f"stopwatch takes a label (str) or a function, not {type(func_or_label).__name__}")
