"""Loading a bot class from a Python file, for `coyote-sdk backtest` and `coyote-sdk run`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from coyote_sdk.bot import Bot


class BotLoadError(ValueError):
    """A file that does not yield exactly one bot (or the named one)."""


def load_bot_class(path: str | Path, name: str | None = None) -> type[Bot]:
    """Imports ``path`` and returns its :class:`Bot` subclass (the one called ``name`` if several).

    The file's folder is put on ``sys.path`` first, so the bot can import its own helper modules.

    Raises:
        BotLoadError: when the file is missing, does not import, or holds no bot or several.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise BotLoadError(f"{path}: no such file")
    module_name = f"coyote_bot_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise BotLoadError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[module_name]
        raise BotLoadError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except Exception as exc:
        del sys.modules[module_name]
        raise BotLoadError(f"{path}: importing it failed: {type(exc).__name__}: {exc}") from exc
    bots = {
        obj.__name__: obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, Bot)
        and obj is not Bot
        and obj.__module__ == module_name
    }
    if name is not None:
        if name not in bots:
            raise BotLoadError(f"{path}: no bot named {name!r} (found {sorted(bots) or 'none'})")
        return bots[name]
    if len(bots) != 1:
        found = ", ".join(sorted(bots)) or "none"
        raise BotLoadError(
            f"{path}: expected one Bot subclass, found {found}"
            + ("; choose one with --bot NAME" if bots else "")
        )
    return next(iter(bots.values()))


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``["fast=10", "slow=30"]`` → ``{"fast": "10", "slow": "30"}``; values are validated (and
    converted) by the bot's parameter model."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param takes NAME=VALUE, got {pair!r}")
        params[key.strip()] = value.strip()
    return params
