"""How every command ends: a known error is one line on stderr and exit code 2.

``launch/*.py`` wrap their absl ``main`` with ``one_line_errors`` and parse their flags with
``parse_flags`` (``app.run(main, flags_parser=cli.parse_flags)``), so a bad flag or a config
override that names no key is one line too. Known errors are the ones
a user can act on: bad values and files (``ValueError``, ``OSError`` and their subclasses,
such as ``ImageReadError`` or ``TowerFilesError``), a describe server that fails
(``BackendError``) and a diverged run (``TrainingDiverged``). Anything else keeps its
traceback: it is a bug report. Ctrl-C prints one line and exits 130.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

# Known errors defined in modules a command may not have imported: (module, class name).
_LAZY_KNOWN = (("regionedit_jax.describe.base", "BackendError"), ("regionedit_jax.train.loop", "TrainingDiverged"))


def known_errors() -> tuple[type[BaseException], ...]:
    """The exception classes a command reports in one line (of the modules loaded so far)."""
    known: list[type[BaseException]] = [ValueError, OSError]
    for module, name in _LAZY_KNOWN:
        loaded = sys.modules.get(module)
        if loaded is not None and hasattr(loaded, name):
            known.append(getattr(loaded, name))
    return tuple(known)


def one_line(error: BaseException) -> str:
    """The error's message on one line (its class name when it has none). A message that embeds
    a traceback (config_flags wraps a config file's error so) keeps its words before the
    traceback and the traceback's last line, the error itself."""
    text = str(error)
    if "Traceback (most recent call last)" in text:
        head, _, trace = text.partition("Traceback (most recent call last)")
        last = [line for line in trace.splitlines() if line.strip()][-1:]
        head = head.rstrip().rstrip(":").rstrip()
        text = f"{head}: {last[0].strip() if last else ''}"
    text = " ".join(text.split())
    return text or type(error).__name__


def one_line_errors(main: Callable[[list[str]], Any]) -> Callable[[list[str]], Any]:
    """Wraps an absl ``main(argv)``: known errors -> ``error: ...`` on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapped(argv):
        try:
            return main(argv)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        except Exception as e:
            if not isinstance(e, known_errors()):
                raise
            print(f"error: {one_line(e)}", file=sys.stderr)
            sys.exit(2)

    return wrapped


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with every error one line and exit code 2: an unknown or bad flag, a
    config file that does not load, a ``--config.KEY`` override naming no key."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except (flags.Error, ValueError, OSError) as e:
        _exit(one_line(e))
    except (AttributeError, KeyError) as e:  # an override applied to a --config given on the line
        _exit(_no_such_key(e, argv))


def define_config(default: str, help_text: str = "Config file (path[:arg]).", name: str = "config"):
    """``config_flags.DEFINE_config_file`` (locked). It applies ``--config.KEY=...`` overrides to
    the default config as it is defined (``parse_flags`` to a ``--config`` given on the command
    line); one naming no key is one line with the near key ml_collections suggests."""
    from ml_collections import config_flags

    try:
        return config_flags.DEFINE_config_file(name, default, help_text, lock_config=True)
    except (AttributeError, KeyError) as e:
        _exit(_no_such_key(e, sys.argv))


def _no_such_key(error: BaseException, argv: list[str]) -> str:
    """ml_collections' AttributeError(KeyError("'widht'\nDid you mean \"width\" ...?")) as one line
    naming the override flag."""
    inner = error
    while inner.args and isinstance(inner.args[0], BaseException):
        inner = inner.args[0]
    text = " ".join(str(inner.args[0] if inner.args else inner).split())
    missing = text.split("'")[1] if text.count("'") >= 2 else text
    hint = text.split("'", 2)[2].strip() if text.count("'") >= 2 else ""
    overrides = [a.split("=", 1)[0] for a in argv[1:] if a.startswith("--") and "." in a.split("=", 1)[0]]
    flag = next((a for a in overrides if missing in a.split(".")[1:]), "a --config.KEY override")
    return f"{flag}: the config has no key {missing!r}. {hint}".strip()


def _exit(message: str):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
