"""The benchmark scripts' own helpers (the benchmarks themselves run in the tox env ``bench``)."""

from __future__ import annotations

import pytest

from benchmarks._common import verdict


@pytest.mark.parametrize(
    ("value", "target", "at_most", "quick", "expected"),
    [
        pytest.param(1.5, 2.0, True, False, "met", id="met"),
        pytest.param(1.5, 2.0, True, True, "met", id="met-quick"),
        pytest.param(2.5, 2.0, True, False, "MISSED", id="missed-full"),
        pytest.param(
            2.5, 2.0, True, True, "not met (not enforced in quick mode)", id="missed-quick"
        ),
        pytest.param(0.9, 0.97, False, True, "not met (not enforced in quick mode)", id="at-least"),
        pytest.param(0.98, 0.97, False, False, "met", id="at-least-met"),
    ],
)
def test_verdict(value: float, target: float, at_most: bool, quick: bool, expected: str) -> None:
    assert verdict(value, target, at_most=at_most, quick=quick) == expected


def test_every_timed_target_says_whether_the_run_is_quick() -> None:
    # A speed verdict without quick= would print MISSED for a quick run's noise again.
    import ast
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "benchmarks"
    for script in ("bench_apply.py", "bench_startup.py", "bench_e2e.py"):
        tree = ast.parse((folder / script).read_text())
        calls = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "verdict"
        ]
        assert calls, script
        for call in calls:
            assert "quick" in {keyword.arg for keyword in call.keywords}, script
