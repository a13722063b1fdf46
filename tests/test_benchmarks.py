"""The benchmark scripts' own helpers (the benchmarks themselves run in the tox env ``bench``)."""

from __future__ import annotations

from pathlib import Path

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


def test_the_latency_plot_is_a_png(tmp_path: Path) -> None:
    import zlib

    from benchmarks.bench_background import write_png

    path = tmp_path / "plot.png"
    write_png(str(path), {"off": [[1.0, 1.0]], "on": [[1.0, 0.002]]}, 10.0)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    length = int.from_bytes(data[33:37], "big")
    assert data[37:41] == b"IDAT"
    pixels = zlib.decompress(data[41 : 41 + length])
    assert len(pixels) == 360 * (1 + 900 * 3)
    assert bytes([214, 39, 40]) in pixels  # the red point
    assert bytes([31, 119, 180]) in pixels  # the blue one
