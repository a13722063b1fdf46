"""Shared helpers for the benchmark scripts: timing loops, tables, a warm token."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence


def per_call(action: Callable[[], object], *, number: int, repeat: int) -> float:
    """Best-of-*repeat* seconds per call of *action*, over *number* calls each."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            action()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def interleaved(
    actions: dict[str, Callable[[], object]],
    *,
    number: int,
    rounds: int,
    setup: dict[str, Callable[[], object]] | None = None,
) -> dict[str, float]:
    """Median seconds per call of each action, measured in turns so that noise hits all alike.

    ``setup[name]``, if given, runs before each turn of that action, outside the timing.
    """
    samples: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(rounds):
        for name, action in actions.items():
            if setup and name in setup:
                setup[name]()
            start = time.perf_counter()
            for _ in range(number):
                action()
            samples[name].append((time.perf_counter() - start) / number)
    return {name: statistics.median(values) for name, values in samples.items()}


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    text = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in text)) for i, h in enumerate(header)]
    lines = [
        "| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in text]
    return "\n".join(lines)


def verdict(value: float, target: float, *, at_most: bool = True, quick: bool = False) -> str:
    """ "met", or for a missed target "MISSED"; in *quick* mode "not met (not enforced ...)".

    A quick run has too few iterations for its speed figures to mean anything, and nothing
    fails on them: a speed target that a quick run misses is labelled as such, not as MISSED.
    Targets that are counts rather than timings (one token request) pass ``quick=False``.
    """
    if value <= target if at_most else value >= target:
        return "met"
    return "not met (not enforced in quick mode)" if quick else "MISSED"


def main(run: Callable[[bool], tuple[str, list[str]]], description: str | None) -> None:
    """The command line of one benchmark script: ``--quick`` for a smoke run, then the table."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="few iterations: a smoke run")
    text, notes = run(parser.parse_args().quick)
    print(text, "", *notes, sep="\n")
