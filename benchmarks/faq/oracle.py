"""The oracle generator: an OpenAI-compatible server on 127.0.0.1 that answers a chunk with the questions people wrote
about it (the benchmark's train split), so the whole recipe runs unchanged on human questions in place of an LLM's.

A chunk is about a question when it holds a run of 8 words of one of the question's relevant passages (or the whole
passage, if shorter). A chunk no question is about gets a 400, which the pipeline counts as a rejected chunk.

    with OracleLLM(queries, relevant, passages) as oracle:   # then --llm openai/oracle --api-base oracle.api_base
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PASSAGE = re.compile(r"<passage>\s*(.*?)\s*</passage>", re.S)
COUNT = re.compile(r"Write (\d+) different")
SHINGLE = 8


def words(text: str) -> list[str]:
    """Case-folded words."""
    return re.findall(r"\w+", text.casefold())


def shingles(tokens: list[str]) -> set[tuple[str, ...]]:
    """Runs of SHINGLE words (the whole list when shorter)."""
    if len(tokens) <= SHINGLE:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + SHINGLE]) for i in range(len(tokens) - SHINGLE + 1)}


class OracleLLM:
    """Serves the human questions whose relevant passages a chunk holds, as a chat model answering in JSON."""

    def __init__(self, queries: dict[str, str], relevant: dict[str, list[str]], passages: dict[str, str]) -> None:
        self.index: dict[tuple[str, ...], set[str]] = {}
        for qid, ids in relevant.items():
            for pid in ids:
                for shingle in shingles(words(passages[pid])):
                    self.index.setdefault(shingle, set()).add(qid)
        self.queries = queries
        self.answered = self.refused = 0
        self.server: ThreadingHTTPServer | None = None

    def questions_for(self, chunk: str) -> list[str]:
        """The questions of every passage a run of words of the chunk belongs to, most shared runs first."""
        tokens = words(chunk)
        hits: dict[str, int] = {}
        for shingle in shingles(tokens) | ({tuple(tokens)} if len(tokens) <= SHINGLE else set()):
            for qid in self.index.get(shingle, ()):
                hits[qid] = hits.get(qid, 0) + 1
        return [self.queries[q] for q in sorted(hits, key=lambda q: (-hits[q], q))]

    def __enter__(self) -> OracleLLM:
        oracle = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": "oracle", "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                last = str((body.get("messages") or [{}])[-1].get("content") or "")
                found, count = PASSAGE.search(last), COUNT.search(last)
                questions = oracle.questions_for(found.group(1) if found else last)[
                    : int(count.group(1)) if count else 2
                ]
                if not questions:
                    oracle.refused += 1
                    self._send(
                        400,
                        {
                            "error": {
                                "message": "no human question is about this passage",
                                "type": "invalid_request_error",
                            }
                        },
                    )
                    return
                oracle.answered += 1
                content = json.dumps({"questions": questions})
                self._send(
                    200,
                    {
                        "id": "oracle",
                        "object": "chat.completion",
                        "model": "oracle",
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                        ],
                        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    @property
    def api_base(self) -> str:
        """The base URL litellm calls (openai/<any name> with this api_base)."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"
