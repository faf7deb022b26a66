"""The README's commands and example: the example runs and prints what the README shows."""

from __future__ import annotations

import contextlib
import io
import math
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def blocks(lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(README) if kind == lang]


def commands(block: str) -> list[str]:
    return [line.strip() for line in block.splitlines() if line.strip()]


def _same(expected: str, actual: str) -> bool:
    """Token by token; numbers equal to a relative 1e-6 (the README prints 6 digits)."""
    exp, act = expected.split(), actual.split()
    if len(exp) != len(act):
        return False
    for e, a in zip(exp, act):
        if e == a:
            continue
        try:
            fe, fa = float(e.strip("{},':")), float(a.strip("{},':"))
        except ValueError:
            return False
        if not math.isclose(fe, fa, rel_tol=1e-6, abs_tol=1e-9):
            return False
    return True


def test_first_block_is_bash_with_exactly_the_two_commands():
    kind, body = FENCE.findall(README)[0]
    assert kind == "bash"
    assert commands(body) == ["pip install -e . && perpbt run ma_cross --leverage 5",
                              "pip install -e '.[dev]' && pytest"]
    assert not any(line.startswith("#") for line in commands(body))


def test_ci_runs_the_readme_second_command():
    second = commands(FENCE.findall(README)[0][1])[1]
    script = (REPO / ".ci" / "run").read_text()
    assert second in commands(script)
    assert "set -euo pipefail" in script and "NUMBA_CACHE_DIR" in script


def test_every_python_block_compiles():
    for i, code in enumerate(blocks("python")):
        compile(code, f"README.md python block {i}", "exec")


def test_readme_example_runs_and_prints_the_readme_output():
    code = blocks("python")[0]
    expected = blocks("text")[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md example", "exec"), {"__name__": "__readme__"})
    assert _same(expected, out.getvalue()), (
        "the README example's output changed; paste the new output into README.md:\n"
        + out.getvalue())
