"""The describe interface: captioner, rewriter and instruction-writer roles, and their errors.

A backend subclasses `Describer`, declares the roles it supports and implements the per-item hooks
(`_caption_one`, `_rewrite_one`, `_write_one`). The public batch methods live here, so every backend
validates inputs and reports per-item rejects the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, overload

ROLES: tuple[str, ...] = ("caption", "rewrite", "write_instructions")

# Stable reject codes (`DescribeError.reason`), so data builders can count rejects by cause.
REASONS: dict[str, str] = {
    "not_text": "the input is not a string",
    "empty": "the input has no words",
    "too_short": "the caption has too few words to edit",
    "too_long": "the input is longer than the backend accepts",
    "garbled": "the caption is mostly not words (file names, URLs, codes)",
    "unparsed": "the instruction matches no known edit form",
    "not_found": "the instruction names an object the caption does not mention (strict mode)",
    "no_change": "applying the instruction leaves the caption unchanged",
    "no_edit": "no edit could be written for this caption",
    "bad_image": "the image is not an HWC array, a PIL image or encoded bytes",
    "bad_json": "the model's answer is not a JSON object",
    "bad_schema": "the model's JSON answer lacks a required string field",
    "refused": "the model declined the request",
}

OnError = Literal["raise", "return"]
T = TypeVar("T")
R = TypeVar("R")


class DescribeError(ValueError):
    """An input a backend cannot handle; `reason` is a short stable code from `REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason, message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} [{self.reason}]"


class UnsupportedRoleError(NotImplementedError):
    """A backend was asked for a role it does not implement."""

    def __init__(self, backend: str, role: str, supported_by: Sequence[str]) -> None:
        others = ", ".join(repr(name) for name in supported_by) or "no registered backend"
        super().__init__(f"the {backend!r} describe backend does not support {role!r}; backends that do: {others}")
        self.backend = backend
        self.role = role


class BackendError(RuntimeError):
    """A transport or server failure (unreachable, HTTP error, retries exhausted): not a reject."""


@dataclass(frozen=True)
class Edit:
    """An edit instruction and the caption of the edited image; `kind` names the edit family."""

    instruction: str
    target_caption: str
    kind: str = ""


def check_text(value: Any, what: str) -> str:
    """Return `value` stripped, or raise DescribeError if it is not a string with words."""
    if not isinstance(value, str):
        raise DescribeError("not_text", f"{what} must be a string, got {type(value).__name__}")
    text = " ".join(value.split())
    if not any(ch.isalnum() for ch in text):
        raise DescribeError("empty", f"{what} is empty")
    return text


def backends_supporting(role: str) -> tuple[str, ...]:
    """Names of the registered backends that implement `role`."""
    from regionedit_jax.describe import BACKENDS  # the registry imports this module

    return tuple(name for name, cls in BACKENDS.items() if role in cls.roles)


class Describer:
    """Base class of describe backends; a role it does not support raises UnsupportedRoleError."""

    name: ClassVar[str] = "base"
    roles: ClassVar[frozenset[str]] = frozenset()

    def supports(self, role: str) -> bool:
        """Whether this backend implements `role` (one of ROLES)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles are {ROLES}")
        return role in self.roles

    # Public batch API -------------------------------------------------------------------------

    @overload
    def caption(self, images: Sequence[Any], *, on_error: Literal["raise"] = ...) -> list[str]: ...

    @overload
    def caption(self, images: Sequence[Any], *, on_error: Literal["return"]) -> list[str | DescribeError]: ...

    def caption(self, images: Sequence[Any], *, on_error: OnError = "raise") -> list[Any]:
        """Describe each image (numpy HWC in [0, 1], uint8, or PIL) in one sentence.

        With on_error="return", an image the backend rejects yields its DescribeError in place.
        """
        self._require("caption")
        return self._batch(self._caption_one, list(images), on_error)

    @overload
    def rewrite(
        self,
        source_captions: Sequence[str],
        instructions: Sequence[str],
        *,
        on_error: Literal["raise"] = ...,
    ) -> list[str]: ...

    @overload
    def rewrite(
        self,
        source_captions: Sequence[str],
        instructions: Sequence[str],
        *,
        on_error: Literal["return"],
    ) -> list[str | DescribeError]: ...

    def rewrite(
        self,
        source_captions: Sequence[str],
        instructions: Sequence[str],
        *,
        on_error: OnError = "raise",
    ) -> list[Any]:
        """Target caption for each (source caption, instruction) pair."""
        self._require("rewrite")
        sources, edits = list(source_captions), list(instructions)
        if len(sources) != len(edits):
            raise ValueError(
                f"rewrite needs one instruction per caption, got {len(sources)} captions and {len(edits)} instructions"
            )
        return self._batch(lambda pair: self._rewrite_one(*pair), list(zip(sources, edits, strict=True)), on_error)

    @overload
    def write_instructions(self, captions: Sequence[str], *, on_error: Literal["raise"] = ...) -> list[Edit]: ...

    @overload
    def write_instructions(
        self, captions: Sequence[str], *, on_error: Literal["return"]
    ) -> list[Edit | DescribeError]: ...

    def write_instructions(self, captions: Sequence[str], *, on_error: OnError = "raise") -> list[Any]:
        """One Edit (instruction, target caption) per plain caption, for building training data."""
        self._require("write_instructions")
        return self._batch(self._write_one, list(captions), on_error)

    # Hooks for backends -----------------------------------------------------------------------

    def _caption_one(self, image: Any) -> str:
        raise self._unsupported("caption")

    def _rewrite_one(self, source_caption: Any, instruction: Any) -> str:
        raise self._unsupported("rewrite")

    def _write_one(self, caption: Any) -> Edit:
        raise self._unsupported("write_instructions")

    def _map(self, fn: Callable[[T], R], items: list[T]) -> list[R]:
        """Apply `fn` to every item in order; backends may override to run items concurrently."""
        return [fn(item) for item in items]

    # Internals --------------------------------------------------------------------------------

    def _unsupported(self, role: str) -> UnsupportedRoleError:
        return UnsupportedRoleError(self.name, role, backends_supporting(role))

    def _require(self, role: str) -> None:
        if not self.supports(role):
            raise self._unsupported(role)

    def _batch(self, fn: Callable[[T], R], items: list[T], on_error: OnError) -> list[Any]:
        if on_error not in ("raise", "return"):
            raise ValueError(f"on_error must be 'raise' or 'return', got {on_error!r}")
        if on_error == "raise":
            return self._map(fn, items)

        def guarded(item: T) -> R | DescribeError:
            try:
                return fn(item)
            except DescribeError as err:
                return err

        return self._map(guarded, items)
