"""The question prompts, how an answer is read, and how one chunk is asked; the templates' own text keys the cache."""

from __future__ import annotations

import json
import re
from typing import Any

from ..core.env import import_defaults
from ..core.objects import stable_hash
from ..llm.client import LLMClient
from ..llm.endpoint import LLMEndpoint
from ..llm.errors import MALFORMED, MalformedAnswer
from ..settings import EMBEDDED_LLMS, LLMSettings

with import_defaults("LITELLM_LOCAL_MODEL_COST_MAP"):  # never fetch the price list at import
    import litellm

SINGLE_PROMPT = "Read the text and write one short question about it.\n\nText: {text}\n\nQuestion:"
SINGLE_MAX_TOKENS = 64  # one question; a longer answer is rambling, cut off (and then too long anyway)
SYSTEM_PROMPT = (
    "You write search queries for training a document retrieval model: queries that the given passage answers. "
    "Mix short keyword queries (2-6 words) with full natural questions. Write in the passage's language. "
    "Each query must make sense without seeing the passage: never say 'the passage' or 'the text', "
    "never copy long phrases from it. Answer with JSON only."
)
USER_PROMPT = "{section}<passage>\n{text}\n</passage>\nWrite {n} different search queries answered by this passage."
# one worked example (a few-shot turn): small local models follow it far better than instructions alone
EXAMPLE_PASSAGE = (
    "The Eiffel Tower in Paris was built by Gustave Eiffel's company for the 1889 World's Fair. It is 330 metres "
    "tall, was the tallest man-made structure in the world until 1930, and is repainted every seven years."
)
EXAMPLE_QUERIES = [
    "eiffel tower height",
    "When was the Eiffel Tower built?",
    "who built the eiffel tower",
    "Why was the Eiffel Tower built?",
    "tallest structure until 1930",
    "How often is the Eiffel Tower repainted?",
    "eiffel tower 1889 world's fair",
    "How tall is the Eiffel Tower in metres?",
    "eiffel tower repainting schedule",
    "Which company built the tower in Paris?",
]
EXAMPLE_WORDS = 60  # a worked example's passage is cut to this many words: the prompt stays short, its prefix cached
EXAMPLE_MIN_QUERY_WORDS = 3
ANSWER_PREFIX = re.compile(r"^\s*(?:question\s*\d*\s*[:.)-]|q\s*[:.)-]|\d+\s*[.)-])\s*", re.I)
FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)


def prompt_style(llm: LLMSettings) -> str:
    """'single' (one plain question per call: both embedded models do far better) or 'json' (n questions per call)."""
    if llm.prompt_style != "auto":
        return llm.prompt_style
    return "single" if llm.model in EMBEDDED_LLMS else "json"


def prompt_fingerprint(llm: LLMSettings) -> str:
    """Hash of every template text the run's prompt style sends and of how many worked examples it takes from the
    corpus: an edited prompt misses the cache, no version to bump. The examples' own text is not in it: a new document
    that brings other examples does not ask the cached chunks again."""
    shots = [llm.few_shot, EXAMPLE_WORDS, EXAMPLE_MIN_QUERY_WORDS, EXAMPLES_PREAMBLE] if llm.few_shot else []
    if prompt_style(llm) == "single":
        return "single-" + stable_hash([SINGLE_PROMPT, SINGLE_MAX_TOKENS, *shots])[:12]
    fixed = [] if llm.few_shot else [EXAMPLE_PASSAGE, EXAMPLE_QUERIES]
    return "json-" + stable_hash([SYSTEM_PROMPT, USER_PROMPT, *fixed, *shots])[:12]


Example = tuple[str, str]  # (a query a person wrote, the passage it is about)
EXAMPLES_PREAMBLE = "Queries people wrote for passages of these documents:"


def domain_examples(chunks: list[dict], k: int) -> list[Example]:
    """Up to k worked examples from the corpus itself: section headings people wrote (of 3 words or more) over the
    start of their section's text, one per heading and at most one per document while others remain, picked by a
    stable hash so that a new document seldom changes them."""
    from .supervision import heading_query, without

    firsts: dict[str, dict] = {}
    for chunk in chunks:
        query = heading_query(chunk.get("section") or "")
        if query and len(query.split()) >= EXAMPLE_MIN_QUERY_WORDS and query not in firsts:
            firsts[query] = chunk
    ranked = sorted(firsts.items(), key=lambda item: stable_hash(item[0]))
    picked: list[tuple[str, dict]] = []
    for pass_ in range(2):  # first one heading per document, then any
        for query, chunk in ranked:
            seen = {c["doc_id"] for _, c in picked}
            if len(picked) < k and (query, chunk) not in picked and (pass_ or chunk["doc_id"] not in seen):
                picked.append((query, chunk))
    cut = lambda q, c: " ".join(without(without(c["text"], c.get("section") or ""), q).split()[:EXAMPLE_WORDS])  # noqa: E731
    return [(query, cut(query, chunk)) for query, chunk in picked]


def max_tokens(llm: LLMSettings) -> int:
    """The completion cap a call of this style sends."""
    return min(llm.max_tokens, SINGLE_MAX_TOKENS) if prompt_style(llm) == "single" else llm.max_tokens


def build_messages(text: str, section: str, n: int, examples: list[Example] = ()) -> list[dict]:
    """The chat messages asking for n questions about one chunk: instructions, worked examples (the corpus's own, else
    one fixed example), the chunk."""
    user = USER_PROMPT.format(section=f"Section: {section}\n" if section else "", text=text, n=n)
    if examples:
        shown = "\n\n".join(f"<passage>\n{passage}\n</passage>\nQuery: {query}" for query, passage in examples)
        return [
            {"role": "system", "content": f"{SYSTEM_PROMPT}\n\n{EXAMPLES_PREAMBLE}\n\n{shown}"},
            {"role": "user", "content": user},
        ]
    example = USER_PROMPT.format(section="", text=EXAMPLE_PASSAGE, n=n)
    answer = json.dumps({"questions": EXAMPLE_QUERIES[:n]}, ensure_ascii=False)
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": example},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": user},
    ]


def single_messages(text: str, examples: list[Example] = ()) -> list[dict]:
    """The one-question prompt for a chunk, after one user/assistant turn per worked example."""
    turns = []
    for query, passage in examples:
        turns += [
            {"role": "user", "content": SINGLE_PROMPT.format(text=passage)},
            {"role": "assistant", "content": query},
        ]
    return [*turns, {"role": "user", "content": SINGLE_PROMPT.format(text=text)}]


def response_format_for(endpoint: LLMEndpoint, n: int) -> dict | None:
    """The strongest JSON constraint the endpoint takes, or None.

    Self-hosted OpenAI-compatible servers (openai/ + api_base: llama-cpp-python, vLLM) get json_object with a
    "schema", which llama-cpp-python turns into a grammar (it refuses type json_schema); hosted models that support
    it get json_schema; others json_object when litellm says the provider takes response_format.
    """
    schema = {
        "type": "object",
        "properties": {"questions": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": n}},
        "required": ["questions"],
        "additionalProperties": False,
    }
    try:
        model, provider, _, _ = litellm.get_llm_provider(endpoint.model, api_base=endpoint.api_base)
    except Exception:  # unknown to litellm: ask without
        return None
    if provider == "openai" and endpoint.api_base:
        return {"type": "json_object", "schema": schema}
    if litellm.supports_response_schema(model, provider):
        return {"type": "json_schema", "json_schema": {"name": "questions", "schema": schema}}
    if "response_format" in (litellm.get_supported_openai_params(model=model, custom_llm_provider=provider) or []):
        return {"type": "json_object"}
    return None


def parse_questions(text: str) -> list[str]:
    """Questions from an answer: code fences stripped, the first JSON object or list holding strings."""
    fenced = FENCE.search(text)
    body = fenced.group(1) if fenced else text
    decoder = json.JSONDecoder()
    for i, ch in enumerate(body):
        if ch in "{[":
            try:
                value, _ = decoder.raw_decode(body, i)
            except json.JSONDecodeError:
                continue
            questions = _questions_in(value)
            if questions:
                return questions
    raise MalformedAnswer(MALFORMED)


def _questions_in(value: Any) -> list[str]:
    if isinstance(value, dict):
        lists = [value.get(k) for k in ("questions", "queries")] + list(value.values())
        value = next((v for v in lists if isinstance(v, list)), [])
    if not isinstance(value, list):
        return []
    out: list[str] = []
    for item in value:
        if isinstance(item, dict):
            item = item.get("question") or item.get("query") or item.get("text")
        if isinstance(item, str) and " ".join(item.split()) and " ".join(item.split()) not in out:
            out.append(" ".join(item.split()))
    return out


def parse_single(text: str) -> str:
    """One question from a plain answer: first line, without 'Question:' or numbering, cut after its '?'."""
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")
    line = ANSWER_PREFIX.sub("", line).strip().strip("\"'*").strip()
    if "?" in line:
        line = line[: line.index("?") + 1]
    if len(line.split()) < 3:
        raise MalformedAnswer(MALFORMED)
    return line


async def ask_single(
    client: LLMClient, chunk: dict, n: int, have: list[str], examples: list[Example] = ()
) -> tuple[list[str], float]:
    """Calls of the one-question prompt until n distinct questions (those in `have` count), at most 2 calls per
    missing question; the server's prompt cache serves the repeated chunk (and the examples before it)."""
    messages = single_messages(chunk["text"], examples)
    questions = list(have)
    cost = 0.0
    for _ in range(2 * (n - len(have))):
        completion = await client.complete(messages, None)
        cost += completion.cost_usd
        try:
            question = parse_single(completion.text)
        except MalformedAnswer:
            continue
        if question not in questions:
            questions.append(question)
        if len(questions) == n:
            break
    if len(questions) == len(have):
        raise MalformedAnswer(MALFORMED)
    return questions, cost


async def ask(
    client: LLMClient, chunk: dict, n: int, response_format: dict | None, have: list[str], examples: list[Example] = ()
) -> tuple[list[str], float]:
    """Up to n questions for one chunk (keeping those already in `have`) and what they cost; a malformed answer is
    asked again once, then MalformedAnswer."""
    if prompt_style(client.settings) == "single":
        return await ask_single(client, chunk, n, have, examples)
    messages = build_messages(chunk["text"], chunk.get("section") or "", n, examples)
    cost = 0.0
    for _ in range(2):
        completion = await client.complete(messages, response_format)
        cost += completion.cost_usd
        try:
            fresh = parse_questions(completion.text)
        except MalformedAnswer:
            continue
        return (have + [q for q in fresh if q not in have])[:n], cost
    raise MalformedAnswer(MALFORMED)
