"""How every command ends: a known error is one line on stderr and exit code 2.

``launch/*.py`` wrap their absl ``main`` with ``one_line_errors``. Known errors are the ones
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
    """The error's message on one line (its class name when it has none)."""
    text = " ".join(str(error).split())
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
