"""A real OpenAI-compatible chat server on 127.0.0.1 for tests and benchmarks, with injectable faults and rate limits.

    with LLMStub(latency_s=0.05, rpm=600, faults=["429", "500"]) as stub:
        litellm.completion(model="openai/stub-model", api_base=stub.api_base, api_key="sk-test", ...)
        stub.requests       # every request: arrival time, passage, status, fault
        stub.chunks_seen    # Counter: passage text -> requests received for it

Faults ("429", "500", "503", "timeout", "malformed", "400", "401", "404", "ok") come from a script applied to the
n-th admitted request of a passage (`scripts` {substring of the passage: [...]}, first match, else `faults` for every
passage), then from `fault_rates` ({"500": 0.1, ...}), drawn deterministically from (seed, passage, n).
`rpm`/`tpm` are enforced as token buckets holding `burst_s` seconds of quota; a request over either limit gets a real
429 with Retry-After (seconds) and retry-after-ms, and is not admitted (nor counted as an attempt of its passage).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PASSAGE = re.compile(r"<passage>\s*(.*?)\s*</passage>", re.S)
COUNT = re.compile(r"(\d+)\s+(?:different\s+)?(?:search\s+)?(?:queries|questions)", re.I)
WORD = re.compile(r"[^\W\d_]{4,}")
STOPWORDS = set(
    "about above after again also although among another because been before being below between both cannot "
    "could does doing down during each either every from further have having here however into itself just "
    "many more most much must only other otherwise over same should since some such than that their them "
    "then there these they this those through under until very what when where whether which while with "
    "within without would your yours will were upon often used using like well even".split()
)
STATUS = {"ok": 200, "malformed": 200, "timeout": 200, "throttled": 429, "429": 429, "format": 400, "401": 401}
STATUS["bad-format"] = 500  # what llama-cpp-python answers to a response_format type it does not know
ERRORS = {
    "400": (400, "invalid_request_error", "Invalid request: the request could not be processed."),
    "404": (404, "invalid_request_error", "The model does not exist or you do not have access to it."),
    "500": (500, "server_error", "The server had an error while processing your request."),
    "503": (503, "server_error", "The engine is currently overloaded, please try again later."),
}


@dataclass
class StubRequest:
    """One request as the stub saw it; tokens is what it counts against TPM (prompt + completion once answered)."""

    t: float
    passage: str
    status: int
    fault: str
    tokens: int


class _Bucket:
    """Token bucket: `rate` per second, holding at most `capacity`."""

    def __init__(self, per_minute: float, burst_s: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_s)
        self.level = self.capacity
        self.stamp = time.monotonic()

    def wait(self, amount: float, now: float) -> float:
        """Seconds until `amount` (capped at capacity) is available."""
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        return max(0.0, (min(amount, self.capacity) - self.level) / self.rate)

    def take(self, amount: float) -> None:
        self.level -= amount


def approx_tokens(text: str) -> int:
    """The stub's token count: a quarter of the characters, rounded up."""
    return math.ceil(len(text) / 4)


def questions_for(passage: str, n: int) -> list[str]:
    """n questions built from the passage's most distinctive words, alternating keyword queries and questions."""
    words = [w for w in WORD.findall(passage) if w.lower() not in STOPWORDS]
    counts = Counter(w.lower() for w in words)
    first = {}
    for i, w in enumerate(words):
        first.setdefault(w.lower(), (i, w))
    ranked = sorted(first, key=lambda k: (-counts[k] * len(k), first[k][0]))
    picked = [first[k][1] for k in ranked] or ["document"]
    out = []
    for i in range(n):
        a, b, c = (picked[(3 * i + j) % len(picked)] for j in range(3))
        out.append(f"{a} {b} {c}".lower() if i % 2 == 0 else f"What is known about {a} and {b}?")
    return out


class LLMStub:
    """OpenAI-compatible chat-completions server in a background thread (a context manager)."""

    def __init__(
        self,
        latency_s: float = 0.0,
        rpm: float | None = None,
        tpm: float | None = None,
        burst_s: float = 1.0,
        faults: Sequence[str] = (),
        scripts: dict[str, Sequence[str]] | None = None,
        fault_rates: dict[str, float] | None = None,
        retry_after_s: float = 1.0,
        hang_s: float = 30.0,
        reject_response_format: bool = False,
        seed: int = 0,
        model: str = "stub-model",
    ) -> None:
        self.latency_s = latency_s
        self.faults = list(faults)
        self.scripts = {k: list(v) for k, v in (scripts or {}).items()}
        self.fault_rates = dict(fault_rates or {})
        self.retry_after_s = retry_after_s
        self.hang_s = hang_s
        self.reject_response_format = reject_response_format
        self.seed = seed
        self.model = model
        self._rpm = _Bucket(rpm, burst_s) if rpm else None
        self._tpm = _Bucket(tpm, burst_s) if tpm else None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._requests: list[StubRequest] = []
        self._admitted: Counter = Counter()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> LLMStub:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        stub = self

        class Handler(_Handler):
            owner = stub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="llm-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hung or sleeping handlers wake up and return."""
        self._stop.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> LLMStub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what tests read -------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_base(self) -> str:
        """The api_base litellm's openai/ provider expects (base_url + /v1)."""
        return self.base_url + "/v1"

    @property
    def requests(self) -> list[StubRequest]:
        """Every chat request received, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def chunks_seen(self) -> Counter:
        """Passage text -> number of requests received for it."""
        return Counter(r.passage for r in self.requests)

    def count(self, status: int | None = None) -> int:
        """Requests received, or those answered with `status`."""
        return sum(1 for r in self.requests if status is None or r.status == status)

    def reset(self) -> None:
        """Forget recorded requests and per-passage attempt counters."""
        with self._lock:
            self._requests.clear()
            self._admitted.clear()

    # -- request handling --------------------------------------------------------------------------------------
    def _pick_fault(self, passage: str, n: int) -> str:
        script = next((s for k, s in self.scripts.items() if k in passage), self.faults)
        if n < len(script):
            return script[n]
        digest = hashlib.sha256(f"{self.seed}|{n}|{passage}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        for fault, rate in self.fault_rates.items():
            if u < rate:
                return fault
            u -= rate
        return "ok"

    def _admit(self, passage: str, tokens: int, response_format: dict | None) -> tuple[StubRequest, float]:
        """Decide a request's fate under the lock: its record (with the fault) and the retry_after for 429s."""
        with self._lock:
            now = time.monotonic()
            waits = [b.wait(a, now) for b, a in ((self._rpm, 1), (self._tpm, tokens)) if b]
            if max(waits, default=0.0) > 0:
                fault, wait = "throttled", max(waits)
            else:
                for bucket, amount in ((self._rpm, 1), (self._tpm, tokens)):
                    if bucket:
                        bucket.take(amount)
                n = self._admitted[passage]
                self._admitted[passage] += 1
                if response_format and self.reject_response_format:
                    fault = "format"
                elif response_format and response_format.get("type") not in ("text", "json_object"):
                    fault = "bad-format"
                else:
                    fault = self._pick_fault(passage, n)
                wait = self.retry_after_s
            status = STATUS.get(fault) or ERRORS[fault][0]
            record = StubRequest(now, passage, status, fault, 0 if fault == "throttled" else tokens)
            self._requests.append(record)
            return record, wait

    def _settle(self, record: StubRequest, used: int) -> None:
        """Count what an answered request really used; the unused completion cap goes back to the TPM bucket."""
        with self._lock:
            if self._tpm:
                self._tpm.level = min(self._tpm.capacity, self._tpm.level + record.tokens - used)
            record.tokens = used


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: LLMStub

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _error(self, status: int, kind: str, message: str, headers: dict | None = None) -> None:
        self._send(status, {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}, headers)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            model = {"id": self.owner.model, "object": "model", "owned_by": "stub"}
            self._send(200, {"object": "list", "data": [model]})
        else:
            self._error(404, "invalid_request_error", f"no route {self.path}")

    def do_POST(self) -> None:
        stub = self.owner
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._error(404, "invalid_request_error", f"no route {self.path}")
            return
        messages = body.get("messages") or [{"content": ""}]
        prompt = "\n".join(str(m.get("content") or "") for m in messages)
        found = PASSAGE.search(str(messages[-1].get("content") or ""))
        passage = found.group(1) if found else str(messages[-1].get("content") or "")
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 256)
        prompt_tokens = approx_tokens(prompt)
        record, wait = stub._admit(passage, prompt_tokens + max_tokens, body.get("response_format"))
        fault = record.fault
        if fault in ("throttled", "429"):
            headers = {"Retry-After": str(max(1, math.ceil(wait))), "retry-after-ms": str(int(wait * 1000))}
            message = f"Rate limit reached for {stub.model}; retry in {wait:.3f}s."
            self._error(429, "rate_limit_exceeded", message, headers)
            return
        if stub._stop.wait(stub.latency_s + (stub.hang_s if fault == "timeout" else 0.0)):
            return
        if fault == "format":
            self._error(400, "invalid_request_error", "response_format is not supported by this server")
            return
        if fault == "bad-format":
            message = (
                "1 validation error: ('body', 'response_format', 'type'): Input should be 'text' or 'json_object'"
            )
            self._error(500, "server_error", message)
            return
        if fault == "401":
            key = self.headers.get("Authorization", "").removeprefix("Bearer ")
            self._error(401, "invalid_request_error", f"Incorrect API key provided: {key}.")
            return
        if fault in ERRORS:
            self._error(*ERRORS[fault])
            return
        found_n = COUNT.search(prompt)
        questions = questions_for(passage, int(found_n.group(1)) if found_n else 2)
        if fault == "malformed":
            content = "Sure! Here are some questions: " + "; ".join(questions)
        else:
            content = json.dumps({"questions": questions})
        completion_tokens = min(max_tokens, approx_tokens(content))
        stub._settle(record, prompt_tokens + completion_tokens)
        self._send(
            200,
            {
                "id": "chatcmpl-" + hashlib.sha1(f"{time.time_ns()}{passage}".encode()).hexdigest()[:24],
                "object": "chat.completion",
                "created": int(time.time()),
                "model": stub.model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )


class DeadEndpoint:
    """A TCP listener on 127.0.0.1 that accepts every connection and closes it at once, counting them: an LLM
    endpoint that is down, where each request the client makes shows up as one connection.

        with DeadEndpoint() as dead:
            ...  # call dead.api_base
        dead.connections
    """

    def __init__(self) -> None:
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.api_base = f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"
        self._sock.settimeout(0.1)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def __enter__(self) -> DeadEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._sock.close()
