"""The OpenAI-compatible describe backend against a scripted local chat-completions server."""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from regionedit_jax.describe import (
    BackendError,
    DescribeError,
    Edit,
    OpenAIDescriber,
    make,
)

KEY_ENV = "REGIONEDIT_TEST_DESCRIBE_KEY"
SECRET = "sk-test-secret-0123456789"


@dataclass
class Reply:
    """A scripted server behaviour: wait `delay` s, then answer `content` or fail with `status`."""

    content: str | None = None
    status: int = 200
    error: str = ""
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


def ok(payload: dict[str, Any] | str, delay: float = 0.0) -> Reply:
    return Reply(content=payload if isinstance(payload, str) else json.dumps(payload), delay=delay)


def _user_text(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return " ".join(part["text"] for part in content if part["type"] == "text")


def default_reply(body: dict[str, Any], delay: float) -> Reply:
    """A valid answer for every role; the target echoes the user text to check batch order."""
    text = _user_text(body)
    return ok(
        {
            "caption": "a cat on a sofa",
            "target_caption": f"edited: {text}",
            "instruction": "turn the cat into a dog",
        },
        delay,
    )


class ChatServer:
    """A local chat-completions server that plays a script of replies, then default replies."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.default_delay = 0.0
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    reply = server.script.pop(0) if server.script else None
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    reply = reply or default_reply(body, server.default_delay)
                    time.sleep(reply.delay)
                finally:  # the request leaves flight before its answer is sent: a client thread
                    with server.lock:  # that got the answer may start its next one at once
                        server.in_flight -= 1
                try:
                    if self.path != "/v1/chat/completions":
                        self._send(404, {"error": {"message": f"no route {self.path}"}})
                    elif reply.raw is not None:
                        self._send_bytes(200, reply.raw, {})
                    elif reply.status != 200:
                        self._send(reply.status, {"error": {"message": reply.error}}, reply.headers)
                    else:
                        self._send(
                            200,
                            {"choices": [{"message": {"role": "assistant", "content": reply.content}}]},
                        )
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                self._send_bytes(status, json.dumps(payload).encode(), headers or {})

            def _send_bytes(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[ChatServer]:
    chat = ChatServer()
    yield chat
    chat.close()


def client(server: ChatServer, **kwargs: Any) -> OpenAIDescriber:
    options = {
        "base_url": server.base_url,
        "model": "text-model",
        "vision_model": "vision-model",
        "timeout": 2.0,
        "max_retries": 2,
        "backoff": 0.01,
    }
    return OpenAIDescriber(**{**options, **kwargs})


# Success paths ----------------------------------------------------------------------------------


def test_rewrite_success_and_request_shape(server):
    server.script = [ok({"target_caption": "a  dog on a sofa "})]
    assert client(server).rewrite(["a cat on a sofa"], ["turn the cat into a dog"]) == ["a dog on a sofa"]
    (request,) = server.requests
    body = request["body"]
    assert request["path"] == "/v1/chat/completions"
    assert body["model"] == "text-model"
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0]["role"] == "system" and "target_caption" in body["messages"][0]["content"]
    assert "a cat on a sofa" in body["messages"][1]["content"]
    assert "turn the cat into a dog" in body["messages"][1]["content"]
    assert "Authorization" not in request["headers"]


def test_caption_sends_the_image_as_a_png_data_url(server):
    from PIL import Image

    rng = np.random.default_rng(0)
    image = rng.random((6, 5, 3)).astype(np.float32)
    described = client(server, max_concurrency=1).caption(
        [image, Image.new("RGB", (4, 3), (255, 0, 0)), (image * 255).astype(np.uint8)]
    )
    assert described == ["a cat on a sofa"] * 3
    bodies = [r["body"] for r in server.requests]
    assert {b["model"] for b in bodies} == {"vision-model"}
    decoded = []
    for body in bodies:
        part = next(p for p in body["messages"][1]["content"] if p["type"] == "image_url")
        prefix, data = part["image_url"]["url"].split(",", 1)
        assert prefix == "data:image/png;base64"
        decoded.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(data)))))
    np.testing.assert_array_equal(decoded[0], np.round(image * 255).astype(np.uint8))
    assert decoded[1].shape == (3, 4, 3) and (decoded[1] == [255, 0, 0]).all()
    np.testing.assert_array_equal(decoded[2], (image * 255).astype(np.uint8))


def test_bad_image_is_rejected_before_any_request(server):
    with pytest.raises(DescribeError) as info:
        client(server).caption([np.zeros((4, 4, 7))])
    assert info.value.reason == "bad_image"
    out = client(server).caption([np.full((2, 2, 3), np.nan), "not an image"], on_error="return")
    assert [e.reason for e in out] == ["bad_image", "bad_image"]
    assert server.requests == []


def test_write_instructions(server):
    server.script = [ok({"instruction": "make it winter", "target_caption": "a cat on a sofa in winter"})]
    assert client(server).write_instructions(["a cat on a sofa"]) == [
        Edit("make it winter", "a cat on a sofa in winter", "model")
    ]


# Malformed answers ------------------------------------------------------------------------------


def test_malformed_json_is_retried(server):
    server.script = [ok("this is not json"), ok({"target_caption": "a dog"})]
    assert client(server).rewrite(["a cat"], ["turn the cat into a dog"]) == ["a dog"]
    assert len(server.requests) == 2


def test_wrong_schema_is_retried(server):
    server.script = [
        ok({"caption": "wrong field"}),
        ok({"target_caption": ""}),
        ok({"target_caption": "a dog"}),
    ]
    assert client(server).rewrite(["a cat"], ["turn the cat into a dog"]) == ["a dog"]
    assert len(server.requests) == 3


def test_always_malformed_raises_describe_error(server):
    server.script = [ok("{broken")] * 3
    with pytest.raises(DescribeError) as info:
        client(server, max_retries=2).rewrite(["a cat"], ["turn the cat into a dog"])
    assert info.value.reason == "bad_json" and "3 attempts" in str(info.value)
    assert len(server.requests) == 3
    server.script = [ok(["a list"])] * 2 + [ok({"target_caption": 3})] * 2
    out = client(server, max_retries=1, max_concurrency=1).rewrite(["a cat", "a dog"], ["x", "y"], on_error="return")
    assert [e.reason for e in out] == ["bad_json", "bad_schema"]


def test_refusal_is_not_retried(server):
    server.script = [ok({"error": "not an image edit"})]
    with pytest.raises(DescribeError) as info:
        client(server).rewrite(["a cat"], ["what is the capital of France"])
    assert info.value.reason == "refused" and "not an image edit" in str(info.value)
    assert len(server.requests) == 1


def test_json_in_a_code_fence_is_accepted(server):
    server.script = [ok('```json\n{"target_caption": "a dog"}\n```')]
    assert client(server).rewrite(["a cat"], ["turn the cat into a dog"]) == ["a dog"]


def test_not_chat_completions_format_is_a_backend_error(server):
    server.script = [Reply(raw=b'{"unexpected": true}')]
    with pytest.raises(BackendError, match="chat-completions format"):
        client(server).rewrite(["a cat"], ["turn the cat into a dog"])


# HTTP errors, timeouts, unreachable servers -----------------------------------------------------


def test_http_500_is_retried(server):
    server.script = [
        Reply(status=500, error="overloaded"),
        Reply(status=503, error="busy"),
        ok({"target_caption": "a dog"}),
    ]
    assert client(server).rewrite(["a cat"], ["turn the cat into a dog"]) == ["a dog"]
    assert len(server.requests) == 3


def test_http_429_honours_retry_after(server):
    server.script = [
        Reply(status=429, error="slow down", headers={"Retry-After": "0"}),
        ok({"target_caption": "a dog"}),
    ]
    assert client(server, backoff=5.0).rewrite(["a cat"], ["turn the cat into a dog"]) == ["a dog"]
    assert len(server.requests) == 2


def test_http_500_forever_gives_up(server):
    server.script = [Reply(status=500, error="internal error")] * 3
    with pytest.raises(BackendError, match=r"HTTP 500: internal error.*3 attempts"):
        client(server, max_retries=2).rewrite(["a cat"], ["turn the cat into a dog"])
    assert len(server.requests) == 3


def test_http_400_fails_at_once_with_the_server_message(server):
    server.script = [Reply(status=400, error="model 'text-model' does not exist")]
    with pytest.raises(BackendError) as info:
        client(server).rewrite(["a cat"], ["turn the cat into a dog"], on_error="return")
    message = str(info.value)
    assert "HTTP 400" in message and "does not exist" in message and server.base_url in message
    assert len(server.requests) == 1


def test_timeout_is_retried(server):
    server.script = [ok({"target_caption": "late"}, delay=0.6), ok({"target_caption": "a dog"})]
    start = time.monotonic()
    assert client(server, timeout=0.2).rewrite(["a cat"], ["turn the cat into a dog"]) == ["a dog"]
    assert time.monotonic() - start < 2.0
    assert len(server.requests) == 2


def test_timeout_forever_gives_up(server):
    server.script = [ok({"target_caption": "late"}, delay=0.5)] * 2
    with pytest.raises(BackendError, match=r"timed out after 0.2 s.*2 attempts"):
        client(server, timeout=0.2, max_retries=1).rewrite(["a cat"], ["turn the cat into a dog"])


def test_unreachable_server_names_the_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    describer = OpenAIDescriber(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, backoff=0.01, timeout=1.0)
    with pytest.raises(BackendError) as info:
        describer.rewrite(["a cat"], ["turn the cat into a dog"])
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in str(info.value)
    assert "cannot reach" in str(info.value)


# Cache, concurrency, API key --------------------------------------------------------------------


def test_cache_answers_without_a_request(server, tmp_path):
    first = client(server, cache_dir=tmp_path).rewrite(["a cat"], ["turn the cat into a dog"])
    assert len(server.requests) == 1
    again = client(server, cache_dir=tmp_path).rewrite(["a cat"], ["turn the cat into a dog"])
    assert again == first and len(server.requests) == 1
    assert len(list(tmp_path.rglob("*.json"))) == 1
    client(server, cache_dir=tmp_path).rewrite(["a cat"], ["turn the cat into a fox"])
    assert len(server.requests) == 2
    client(server, cache_dir=tmp_path, model="other-model").rewrite(["a cat"], ["turn the cat into a dog"])
    assert len(server.requests) == 3


def test_malformed_answers_are_not_cached(server, tmp_path):
    server.script = [ok("nope")] * 2
    with pytest.raises(DescribeError):
        client(server, cache_dir=tmp_path, max_retries=1).rewrite(["a cat"], ["x"])
    assert client(server, cache_dir=tmp_path).rewrite(["a cat"], ["x"]) == [
        "edited: Source caption: a cat Instruction: x"
    ]


def test_batch_runs_concurrently_and_keeps_order(server):
    server.default_delay = 0.2
    instructions = [f"edit number {i}" for i in range(8)]
    start = time.monotonic()
    out = client(server, max_concurrency=4).rewrite(["a cat"] * 8, instructions)
    elapsed = time.monotonic() - start
    assert [o.rsplit(": ", 1)[-1] for o in out] == instructions
    assert server.max_in_flight == 4
    assert elapsed < 8 * 0.2 * 0.75


def test_api_key_is_sent_but_never_shown(server, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, SECRET)
    describer = client(server, api_key_env=KEY_ENV)
    assert describer.rewrite(["a cat"], ["turn the cat into a dog"])
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert SECRET not in repr(describer) and KEY_ENV in repr(describer)
    assert SECRET not in str(vars(describer))
    server.script = [
        Reply(status=500, error=f"bad key {SECRET}"),
        Reply(status=401, error=f"invalid key {SECRET}"),
    ]
    with caplog.at_level(logging.DEBUG), pytest.raises(BackendError) as info:
        describer.rewrite(["a cat"], ["turn the cat into a fox"])
    assert "HTTP 401" in str(info.value) and "***" in str(info.value)
    assert SECRET not in str(info.value) and SECRET not in caplog.text


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_refused_and_the_key_never_reaches_another_host(server, monkeypatch, status):
    """urllib would resend Authorization to wherever a 30x points; the describer follows no redirect."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    elsewhere = ChatServer()
    try:
        target = elsewhere.base_url.replace("127.0.0.1", "localhost") + "/chat/completions"
        server.script = [Reply(status=status, error="moved", headers={"Location": target})]
        with pytest.raises(BackendError, match=rf"HTTP {status}, a redirect to .*not followed.*base_url"):
            client(server, api_key_env=KEY_ENV, max_retries=0).rewrite(["a cat"], ["turn the cat into a dog"])
        assert len(server.requests) == 1 and elsewhere.requests == []
    finally:
        elsewhere.close()


def test_missing_key_variable_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ValueError, match=KEY_ENV):
        OpenAIDescriber(api_key_env=KEY_ENV)


def test_make_builds_the_openai_backend(server):
    describer = make({"backend": "openai", "base_url": server.base_url, "model": "m"}, max_retries=0)
    assert isinstance(describer, OpenAIDescriber) and describer.max_retries == 0
    assert describer.rewrite(["a cat"], ["x"]) == ["edited: Source caption: a cat Instruction: x"]
    with pytest.raises(ValueError, match="http"):
        OpenAIDescriber(base_url="127.0.0.1:8000")
