"""Describe backend for any OpenAI-compatible chat-completions server (vLLM, SGLang, Ollama).

Only the standard library talks to the server. Every answer is requested as a JSON object, checked
against a small schema, and cached on disk by a sha256 of the request. Transport failures (HTTP 429
and 5xx, timeouts, refused connections) are retried with exponential backoff and finally raise
BackendError; a malformed answer is re-requested and finally raises DescribeError, so data builders
can count it as a reject. The API key is read from the named environment variable for each request
and never stored, logged or shown in reprs and errors.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import logging
import os
import random
import struct
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from regionedit_jax.describe.base import (
    ROLES,
    BackendError,
    DescribeError,
    Describer,
    Edit,
    check_text,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

CACHE_VERSION = 1

CAPTION_PROMPT = (
    "You write captions for an image-editing dataset. Describe the image in one plain sentence of "
    "at most 25 words: the main subject, its important attributes and the setting. No opinions, "
    'no "the image shows". Reply with a JSON object only: {"caption": "<the caption>"}'
)
REWRITE_PROMPT = (
    "You rewrite image captions for an image-editing dataset. Given the caption of a source image "
    "and an edit instruction, write the caption of the edited image: apply the instruction, keep "
    "every part of the caption the instruction does not touch, and use the same plain style. "
    'Reply with a JSON object only: {"target_caption": "<the edited caption>"}. If the '
    'instruction is not an image edit, reply {"error": "<short reason>"} instead.'
)
INSTRUCTION_PROMPT = (
    "You write training data for instruction-driven image editing. Given the caption of an image, "
    "invent one realistic edit of it: replace an object, add an object, remove an object, change "
    "a colour or material, change the background, the season, the weather or the time of day, or "
    "restyle it (painting, sketch, cartoon). Write the instruction as a short imperative sentence "
    "and the caption of the edited image in the same style as the given caption. Reply with a "
    'JSON object only: {"instruction": "<the instruction>", "target_caption": "<the caption>"}'
)


# Images -----------------------------------------------------------------------------------------


def _png(pixels: np.ndarray) -> bytes:
    """Encode a uint8 array [H, W] or [H, W, C] (C in 1..4) as PNG with zlib alone."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width, channels = pixels.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = np.concatenate([np.zeros((height, 1), np.uint8), pixels.reshape(height, width * channels)], axis=1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(np.ascontiguousarray(rows).tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def image_data_url(image: Any) -> str:
    """A data URL for numpy HWC (float in [0, 1] or uint8), a PIL image, or PNG/JPEG bytes."""
    if isinstance(image, (bytes, bytearray)):
        data = bytes(image)
        if data.startswith(b"\x89PNG"):
            mime = "image/png"
        elif data.startswith(b"\xff\xd8"):
            mime = "image/jpeg"
        else:
            raise DescribeError("bad_image", "image bytes are neither PNG nor JPEG")
    elif hasattr(image, "save") and hasattr(image, "mode"):
        if image.mode not in ("RGB", "RGBA", "L", "LA"):
            image = image.convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data, mime = buffer.getvalue(), "image/png"
    else:
        try:
            pixels = np.asarray(image)
        except (TypeError, ValueError) as err:
            raise DescribeError("bad_image", f"cannot read image: {err}") from err
        if (pixels.ndim == 3 and pixels.shape[-1] not in (1, 2, 3, 4)) or pixels.ndim not in (2, 3):
            raise DescribeError("bad_image", f"image must be [H, W] or [H, W, C<=4], got shape {pixels.shape}")
        if pixels.size == 0:
            raise DescribeError("bad_image", "image is empty")
        if pixels.dtype != np.uint8:
            if not np.issubdtype(pixels.dtype, np.number) or not np.all(np.isfinite(pixels)):
                raise DescribeError("bad_image", "image must be numeric and finite")
            pixels = np.round(np.clip(pixels.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
        data, mime = _png(pixels), "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


# Answers ---------------------------------------------------------------------------------------


def parse_answer(content: Any, fields: tuple[str, ...]) -> dict[str, str]:
    """The JSON object in `content` with every field in `fields` a non-empty string.

    An object with only an "error" string is a refusal (reason "refused"); other shapes raise
    "bad_json" or "bad_schema".
    """
    if not isinstance(content, str):
        raise DescribeError("bad_json", f"the answer has no text content (got {type(content).__name__})")
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`").strip()
        text = text[4:] if text.lower().startswith("json") else text
    try:
        answer = json.loads(text)
    except json.JSONDecodeError as err:
        raise DescribeError("bad_json", f"the answer is not JSON ({err.msg}): {content[:200]!r}") from err
    if not isinstance(answer, dict):
        raise DescribeError("bad_json", f"the answer is JSON but not an object: {content[:200]!r}")
    if isinstance(answer.get("error"), str) and not any(answer.get(f) for f in fields):
        raise DescribeError("refused", f"the model declined: {answer['error'][:200]}")
    out = {}
    for field in fields:
        value = answer.get(field)
        if not isinstance(value, str) or not value.strip():
            raise DescribeError("bad_schema", f"the answer lacks a non-empty string {field!r}: {content[:200]!r}")
        out[field] = " ".join(value.split())
    return out


# The backend ------------------------------------------------------------------------------------


class OpenAIDescriber(Describer):
    """Captioner, rewriter and instruction writer backed by an OpenAI-compatible server.

    base_url: the API root, e.g. "http://127.0.0.1:8000/v1"; requests go to
        base_url + "/chat/completions".
    model: text model for rewrite and write_instructions; vision_model: the model for caption.
    api_key_env: name of the environment variable holding the key (None: send no key).
    timeout: seconds per HTTP request; max_retries: extra attempts after a retryable failure
        (transport) and, separately, after a malformed answer; backoff: first retry delay in
        seconds, doubled each retry up to max_backoff.
    cache_dir: directory of cached answers (None: no cache); max_concurrency: parallel requests
        for a batch.
    """

    name = "openai"
    roles = frozenset(ROLES)

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000/v1",
        model: str = "Qwen/Qwen2.5-7B-Instruct",
        vision_model: str = "Qwen/Qwen2.5-VL-7B-Instruct",
        api_key_env: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        cache_dir: str | os.PathLike[str] | None = None,
        max_concurrency: int = 8,
        temperature: float = 0.0,
        max_tokens: int = 256,
        seed: int | None = None,
    ) -> None:
        parsed = urllib.parse.urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if max_retries < 0 or max_concurrency < 1 or timeout <= 0:
            raise ValueError("need max_retries >= 0, max_concurrency >= 1 and timeout > 0")
        if api_key_env is not None and not os.environ.get(api_key_env):
            raise ValueError(f"environment variable {api_key_env!r} (the API key) is not set")
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model = model
        self.vision_model = vision_model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_concurrency = max_concurrency
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        loopback = parsed.hostname in ("localhost", "127.0.0.1", "::1")
        # Servers on this machine are reached directly, whatever proxy the environment names.
        handlers = [urllib.request.ProxyHandler({})] if loopback else []
        self._opener = urllib.request.build_opener(*handlers, _NoRedirects())

    def __repr__(self) -> str:
        return (
            f"OpenAIDescriber(base_url={self.base_url!r}, model={self.model!r}, "
            f"vision_model={self.vision_model!r}, api_key_env={self.api_key_env!r}, "
            f"cache_dir={str(self.cache_dir) if self.cache_dir else None!r})"
        )

    # Roles ------------------------------------------------------------------------------------

    def _caption_one(self, image: Any) -> str:
        content = [
            {"type": "text", "text": "Caption this image."},
            {"type": "image_url", "image_url": {"url": image_data_url(image)}},
        ]
        return self._ask(self.vision_model, CAPTION_PROMPT, content, ("caption",))["caption"]

    def _rewrite_one(self, source_caption: Any, instruction: Any) -> str:
        source = check_text(source_caption, "source caption")
        edit = check_text(instruction, "instruction")
        prompt = f"Source caption: {source}\nInstruction: {edit}"
        return self._ask(self.model, REWRITE_PROMPT, prompt, ("target_caption",))["target_caption"]

    def _write_one(self, caption: Any) -> Edit:
        text = check_text(caption, "caption")
        answer = self._ask(self.model, INSTRUCTION_PROMPT, f"Caption: {text}", ("instruction", "target_caption"))
        return Edit(answer["instruction"], answer["target_caption"], "model")

    def _map(self, fn: Callable[[T], R], items: list[T]) -> list[R]:
        if len(items) <= 1 or self.max_concurrency == 1:
            return [fn(item) for item in items]
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(items)))
        try:
            futures = [pool.submit(fn, item) for item in items]
            return [future.result() for future in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # Requests ---------------------------------------------------------------------------------

    def _ask(self, model: str, system: str, user: Any, fields: tuple[str, ...]) -> dict[str, str]:
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "response_format": {"type": "json_object"},
        }
        if self.seed is not None:
            body["seed"] = self.seed
        key = hashlib.sha256(json.dumps({"v": CACHE_VERSION, "body": body}, sort_keys=True).encode("utf-8")).hexdigest()
        cached = self._cache_get(key)
        if cached is not None:
            return parse_answer(cached, fields)
        attempt = 1
        while True:
            content = self._post(body)
            try:
                answer = parse_answer(content, fields)
            except DescribeError as err:
                if err.reason == "refused":
                    self._cache_put(key, content)
                    raise
                if attempt > self.max_retries:
                    raise DescribeError(err.reason, f"{err.message} (after {attempt} attempts)") from None
                log.warning("%s: malformed answer (attempt %d): %s", self.url, attempt, err)
                attempt += 1
                continue
            self._cache_put(key, content)
            return answer

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env, "")
            if not key:
                raise BackendError(f"environment variable {self.api_key_env!r} is not set")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _redact(self, text: str) -> str:
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        return text.replace(key, "***") if len(key) >= 4 else text

    def _post(self, body: dict[str, Any]) -> Any:
        """POST `body` and return choices[0].message.content, retrying transient failures."""
        data = json.dumps(body).encode("utf-8")
        problem, retry_after = "", None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep(attempt, problem, retry_after)
                retry_after = None
            request = urllib.request.Request(self.url, data=data, headers=self._headers(), method="POST")
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as err:
                if 300 <= err.code < 400:
                    where = err.headers.get("Location", "?") if err.headers else "?"
                    raise BackendError(
                        f"{self.url} answered HTTP {err.code}, a redirect to {self._redact(where)}; redirects are "
                        "not followed (the API key goes only to the configured server): set base_url to the "
                        "address the server names."
                    ) from None
                text = self._redact(_error_text(err))
                if err.code == 429 or err.code >= 500:
                    problem = f"HTTP {err.code}: {text}"
                    retry_after = _retry_after(err)
                    continue
                raise BackendError(f"{self.url} answered HTTP {err.code}: {text}") from None
            except urllib.error.URLError as err:
                reason = err.reason
                if isinstance(reason, TimeoutError):
                    problem = f"timed out after {self.timeout:g} s"
                else:
                    problem = f"cannot reach the server ({reason})"
                continue
            except TimeoutError:
                problem = f"timed out after {self.timeout:g} s"
                continue
            except (ConnectionError, http.client.HTTPException) as err:
                problem = f"connection failed ({type(err).__name__}: {err})"
                continue
            return self._content(raw)
        raise BackendError(f"{self.url}: {self._redact(problem)} (gave up after {self.max_retries + 1} attempts)")

    def _content(self, raw: bytes) -> Any:
        try:
            envelope = json.loads(raw)
            return envelope["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError) as err:
            preview = self._redact(raw[:200].decode("utf-8", "replace"))
            raise BackendError(
                f"{self.url} did not answer in the chat-completions format ({type(err).__name__}): {preview!r}"
            ) from None

    def _sleep(self, attempt: int, problem: str, retry_after: float | None) -> None:
        """Wait before retry `attempt`: the server's Retry-After, else exponential backoff."""
        if retry_after is not None:
            delay = min(self.max_backoff, retry_after)
        else:
            delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            delay *= 1.0 + 0.1 * random.random()
        log.warning("%s: %s; retry %d/%d in %.2f s", self.url, problem, attempt, self.max_retries, delay)
        time.sleep(delay)

    # Cache ------------------------------------------------------------------------------------

    def _cache_path(self, key: str) -> Path | None:
        return self.cache_dir / key[:2] / f"{key}.json" if self.cache_dir is not None else None

    def _cache_get(self, key: str) -> str | None:
        path = self._cache_path(key)
        if path is None or not path.exists():
            return None
        try:
            content = json.loads(path.read_text(encoding="utf-8"))["content"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
            log.warning("ignoring unreadable cache entry %s: %s", path, err)
            return None
        return content if isinstance(content, str) else None

    def _cache_put(self, key: str, content: str) -> None:
        path = self._cache_path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump({"content": content}, out)
        os.replace(tmp, path)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuses every redirect: urllib would resend the Authorization header to the new host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises the 3xx as an HTTPError


def _error_text(err: urllib.error.HTTPError) -> str:
    """The server's error message from an HTTP error body (OpenAI error JSON or plain text)."""
    try:
        raw = err.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        raw = ""
    finally:
        err.close()
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError:
        return raw.strip()[:500] or str(err.reason)
    if isinstance(payload, dict):
        inner = payload.get("error", payload)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"][:500]
        if isinstance(inner, str):
            return inner[:500]
    return raw.strip()[:500]


def _retry_after(err: urllib.error.HTTPError) -> float | None:
    value = err.headers.get("Retry-After") if err.headers else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
