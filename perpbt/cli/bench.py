"""``perpbt bench``: run benchmarks/bench_engine.py of the checkout and relay its output."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

import perpbt


def bench_script() -> Optional[Path]:
    """benchmarks/bench_engine.py of the working directory or of the checkout."""
    for root in (Path.cwd(), Path(perpbt.__file__).resolve().parents[1]):
        candidate = root / "benchmarks" / "bench_engine.py"
        if candidate.is_file():
            return candidate
    return None


def bench_cmd(
    bars: int = typer.Option(20_000, "--bars", help="Bars of the synthetic 1-minute series "
                                                    "(the full benchmark uses 1,000,000)."),
    repeat: int = typer.Option(3, "--repeat", help="Timed repeats; the minimum is reported."),
    vbt: bool = typer.Option(True, "--vbt/--no-vbt", help="Include vectorbt (if installed)."),
    startup: bool = typer.Option(
        False, "--startup/--no-startup",
        help="Also measure the compile time with an empty numba cache and a fresh process's "
             "first call (subprocesses; takes minutes)."),
) -> None:
    """Run benchmarks/bench_engine.py (perpbt vs vectorbt vs a minimal numba loop, ns/bar)
    and print its output."""
    import subprocess

    from perpbt import cli  # looked up on the package, where tests replace it

    script = cli.bench_script()
    if script is None:
        Console(stderr=True).print(
            "[red]error:[/red] benchmarks/bench_engine.py not found (looked in the working "
            "directory and the perpbt checkout); it ships with the source repository, not the "
            "wheel: run `perpbt bench` from a checkout", highlight=False)
        raise typer.Exit(1)
    cmd = [sys.executable, str(script), "--bars", str(bars), "--repeat", str(repeat)]
    if not startup:
        cmd.append("--skip-subprocess")
    if not vbt:
        cmd.append("--skip-vbt")
    typer.echo(f"$ {' '.join(cmd)}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        typer.echo(line.rstrip("\n"))
    if proc.wait() != 0:
        raise typer.Exit(proc.returncode)
