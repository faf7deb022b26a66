"""STRATEGY, --param and --grid: finding, importing and building a user's strategy."""

from __future__ import annotations

import difflib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any, Optional

import typer

import perpbt
from perpbt.strategy import Strategy


def strategy_dirs() -> list[Path]:
    """Where a strategy name is looked up: ./strategies, then the checkout's strategies/."""
    dirs = [Path.cwd() / "strategies", Path(perpbt.__file__).resolve().parents[1] / "strategies"]
    out: list[Path] = []
    for d in dirs:
        if d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def available_strategies() -> list[str]:
    """Names of the strategy files in :func:`strategy_dirs` (for the did-you-mean hint)."""
    names = {p.stem for d in strategy_dirs() if d.is_dir() for p in d.glob("*.py")
             if not p.stem.startswith("_")}
    return sorted(names)


def resolve_strategy_path(spec: str) -> tuple[Path, Optional[str]]:
    """(file, class name or None) for a path, ``path.py:Class`` or a strategy name."""
    cls_name = None
    match = re.fullmatch(r"(.+\.py):([A-Za-z_]\w*)", spec)
    if match:
        spec, cls_name = match.groups()
    path = Path(spec).expanduser()
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise typer.BadParameter(f"no strategy file {spec!r}", param_hint="STRATEGY")
        return path, cls_name
    if not re.fullmatch(r"[A-Za-z_]\w*", spec):
        raise typer.BadParameter(f"{spec!r} is neither a .py file nor a strategy name",
                                 param_hint="STRATEGY")
    for folder in strategy_dirs():
        candidate = folder / f"{spec}.py"
        if candidate.is_file():
            return candidate, cls_name
    known = available_strategies()
    close = difflib.get_close_matches(spec, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = ", ".join(str(d) for d in strategy_dirs())
    raise typer.BadParameter(f"unknown strategy {spec!r}{hint}; available: {known or 'none'} "
                             f"(looked in {where})", param_hint="STRATEGY")


def load_strategy_class(path: Path, cls_name: Optional[str] = None) -> type[Strategy]:
    """The one ``pb.Strategy`` subclass defined in ``path`` (or the one named ``cls_name``)."""
    mod_name = "perpbt_user_strategy_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise typer.BadParameter(f"cannot import {path}", param_hint="STRATEGY")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: report what broke, with its type
        sys.modules.pop(mod_name, None)
        raise typer.BadParameter(f"importing {path} failed: {type(exc).__name__}: {exc}",
                                 param_hint="STRATEGY") from exc
    found = {name: obj for name, obj in vars(module).items()
             if isinstance(obj, type) and issubclass(obj, Strategy) and obj is not Strategy
             and obj.__module__ == mod_name}
    if cls_name is not None:
        if cls_name not in found:
            raise typer.BadParameter(f"{path} defines no Strategy subclass {cls_name!r}; it "
                                     f"defines {sorted(found)}", param_hint="STRATEGY")
        return found[cls_name]
    if len(found) != 1:
        what = "no pb.Strategy subclass" if not found else f"several: {sorted(found)}"
        raise typer.BadParameter(f"{path} must define exactly one pb.Strategy subclass, found "
                                 f"{what} (pick one with {path}:ClassName)",
                                 param_hint="STRATEGY")
    return next(iter(found.values()))


def parse_value(text: str) -> Any:
    """'5' -> 5, '0.5' -> 0.5, 'true'/'false' -> bool, anything else stays a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_params(items: list[str]) -> dict[str, Any]:
    """``["fast=12", "slow=48"]`` -> {"fast": 12, "slow": 48}."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key) or not value.strip():
            raise typer.BadParameter(f"expected key=value (e.g. fast=12), got {item!r}",
                                     param_hint="--param")
        params[key] = parse_value(value.strip())
    return params


def build_strategy(spec: str, items: list[str]) -> Strategy:
    """The strategy named by STRATEGY with --param overrides; bad keys list the defaults."""
    cls = load_strategy_class(*resolve_strategy_path(spec))
    params = parse_params(items)
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        defaults = ", ".join(f"{k}={v!r}" for k, v in cls().params.items())
        raise typer.BadParameter(f"{exc} ({cls.__name__} parameters and defaults: {defaults})",
                                 param_hint="--param") from exc


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["fast=6,12", "slow=48"]`` -> {"fast": [6, 12], "slow": [48]}."""
    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        parsed = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key) or not parsed:
            raise typer.BadParameter(f"expected key=v1,v2 (e.g. fast=6,12), got {item!r}",
                                     param_hint="--grid")
        grid.setdefault(key, []).extend(parsed)
    return grid
