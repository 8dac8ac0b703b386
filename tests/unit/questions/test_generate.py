"""Question generation against a real OpenAI-compatible server: no chunk lost, per-chunk cache, resume, filters."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
from llm_stub import DeadEndpoint, LLMStub  # noqa: E402

from domain_embed.tasks.core.objects import (
    read_jsonl,
    read_npy,  # noqa: E402
)
from domain_embed.tasks.core.store import RunStore  # noqa: E402
from domain_embed.tasks.embedding.models import resolve_model  # noqa: E402
from domain_embed.tasks.llm.endpoint import LLMEndpoint  # noqa: E402
from domain_embed.tasks.llm.errors import (  # noqa: E402
    LLMFatalError,
    LLMRejectedError,
    LLMTransientError,
    LLMUnavailableError,
)
from domain_embed.tasks.questions.filters import NearDuplicateIndex, filter_questions, passes_roundtrip  # noqa: E402
from domain_embed.tasks.questions.generate import (  # noqa: E402
    cache_key,
    collect_answers,
    generate_pairs,
    generate_task,
)
from domain_embed.tasks.questions.prompts import MALFORMED, MalformedAnswer, parse_questions  # noqa: E402
from domain_embed.tasks.settings import FilterSettings, LLMSettings  # noqa: E402

PASSAGES = [
    "Volcanoes erupt when magma rises through the crust and dissolved gases force molten rock, ash and steam out.",
    "Honeybees tell their hive mates where flowers are with a waggle dance whose angle encodes direction to the sun.",
    "The TCP three-way handshake opens a connection: the client sends SYN, the server answers SYN-ACK, then ACK.",
    "Roman aqueducts carried water across valleys on stone arches, keeping a gentle downhill gradient for kilometres.",
    "Photosynthesis in chloroplasts turns sunlight, carbon dioxide and water into glucose, releasing oxygen.",
    "Ocean tides rise and fall twice a day because the gravity of the moon and the sun pulls on the seas.",
    "Espresso is brewed by forcing hot water at nine bars of pressure through finely ground, tamped coffee.",
    "Glaciers carve U-shaped valleys as compacted snow turns to ice and slowly flows downhill, grinding the bedrock.",
    "Vaccines train the immune system by presenting a harmless antigen so memory cells recognise the real pathogen.",
    "In chess, the Sicilian Defence answers the king's pawn opening with c5, fighting for the centre asymmetrically.",
    "Lithium-ion batteries store energy by shuttling lithium ions between a graphite anode and a metal oxide cathode.",
    "Jazz musicians improvise over chord progressions, and swing rhythm gives the eighth notes a lilting feel.",
]
CHUNKS = [
    {"chunk_id": f"{i:016x}", "doc_id": f"{i // 3:016x}", "section": "", "text": text, "n_tokens": 30}
    for i, text in enumerate(PASSAGES)
]
FILTERS = FilterSettings(roundtrip_top_k=3)


@pytest.fixture(scope="module")
def base_model() -> str:
    return resolve_model("all-MiniLM-L6-v2")


def llm(**kw) -> LLMSettings:
    base = dict(model="stub-logical", backoff_base_s=0.02, timeout_s=5, max_attempts=4, max_concurrency=4)
    return LLMSettings(**{**base, **kw})


def endpoint(stub: LLMStub) -> LLMEndpoint:
    return LLMEndpoint(model="openai/stub-model", api_base=stub.api_base)


def cached_keys(store: RunStore) -> set[str]:
    return {p.stem for p in Path(store.root, "qa-cache").rglob("*.json")}


def test_all_chunks_answered_then_rerun_makes_no_call(tmp_path, base_model):
    store, settings = RunStore(str(tmp_path)), llm()
    with LLMStub() as stub:
        first = generate_pairs(CHUNKS, settings, FILTERS, endpoint(stub), base_model, store)
        assert stub.count() == 12 and set(stub.chunks_seen.values()) == {1}
        stub.reset()
        second = generate_pairs(CHUNKS, settings, FILTERS, endpoint(stub), base_model, store)
        assert stub.count() == 0
    s = first.stats
    assert (s.chunks_in, s.chunks_answered, s.chunks_failed_count, s.llm_calls) == (12, 12, 0, 12)
    assert s.questions_raw == 24 and s.questions_kept + sum(s.dropped.values()) == 24
    assert s.questions_kept >= 20 and s.prompt_tokens > 0 and s.response_format == "json_object"
    rows = read_jsonl(first.pairs)
    assert len(rows) == s.questions_kept
    assert rows == sorted(rows, key=lambda r: (r["doc_id"], r["chunk_id"], r["candidate"]))
    assert {r["chunk_id"] for r in rows} <= {c["chunk_id"] for c in CHUNKS}
    assert set(rows[0]) == {"query", "chunk_id", "doc_id", "base_rank", "candidate"}
    assert second.stats.llm_calls == 0 and second.stats.cache_hits == 12
    assert second.pairs.sha256 == first.pairs.sha256


def test_faults_lose_no_chunk_and_failed_chunks_are_retried_next_run(tmp_path, base_model):
    scripts = {
        "Volcanoes": ["malformed", "malformed"],  # asked twice, then dropped as malformed
        "Honeybees": ["malformed"],  # second answer parses
        "TCP": ["400"],  # rejected at once
        "aqueducts": ["500", "429", "timeout"],  # three transient faults, then answered
        "Photosynthesis": ["503"] * 10,  # outlasts max_attempts
    }
    store, settings = RunStore(str(tmp_path)), llm(timeout_s=0.5)
    with LLMStub(scripts=scripts, retry_after_s=0.05, hang_s=3) as stub:
        result = generate_pairs(CHUNKS, settings, FILTERS, endpoint(stub), base_model, store)
        seen = {text.split()[0]: n for text, n in stub.chunks_seen.items()}
        s = result.stats
        assert s.chunks_answered + s.chunks_failed_count == s.chunks_in == 12
        failed = {f["chunk_id"]: f["reason"] for f in s.chunks_failed}
        assert failed == {
            CHUNKS[0]["chunk_id"]: MALFORMED,
            CHUNKS[2]["chunk_id"]: "rejected by the provider (400)",
            CHUNKS[4]["chunk_id"]: "transient faults outlasted every attempt (503)",
        }
        counts = [seen[w] for w in ("Volcanoes", "Honeybees", "The", "Roman", "Photosynthesis")]
        assert counts == [2, 2, 1, 4, 4]
        assert s.llm_calls == stub.count() == sum(seen.values())
        assert len(cached_keys(store)) == 9

        stub.reset()
        stub.scripts = {}
        again = generate_pairs(CHUNKS, settings, FILTERS, endpoint(stub), base_model, store)
        assert sorted(stub.chunks_seen) == sorted(PASSAGES[i] for i in (0, 2, 4))
        assert again.stats.chunks_answered == 12 and again.stats.llm_calls == 3


def test_server_rate_limit_and_rejected_response_format(tmp_path, base_model):
    with LLMStub(rpm=240, reject_response_format=True) as stub:
        settings = llm(requests_per_minute=2000, max_attempts=8)
        result = generate_pairs(CHUNKS, settings, FILTERS, endpoint(stub), base_model, RunStore(str(tmp_path)))
        assert stub.count(429) > 0 and result.stats.rate_limited == stub.count(429)
        assert [r.status for r in stub.requests if r.status != 429][:2] == [400, 200]
    assert result.stats.chunks_answered == 12 and result.stats.response_format == "rejected, sent without"


def test_wrong_key_stops_the_run_with_one_call(tmp_path, base_model, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-wrong-777")
    with LLMStub(fault_rates={"401": 1.0}) as stub:
        with pytest.raises(LLMFatalError, match="STUB_KEY") as caught:
            settings = llm(api_key_env="STUB_KEY")
            generate_pairs(CHUNKS, settings, FILTERS, endpoint(stub), base_model, RunStore(str(tmp_path)))
        assert stub.count() == 1
    assert "sk-wrong-777" not in str(caught.value)


def test_a_dead_endpoint_gets_max_consecutive_failures_requests_then_the_run_stops(tmp_path, base_model):
    settings = llm(max_attempts=6, max_concurrency=16)  # max_consecutive_failures: 10 by default
    with DeadEndpoint() as dead:
        with pytest.raises(LLMUnavailableError, match="10 requests in a row got no answer") as caught:
            generate_pairs(
                CHUNKS,
                settings,
                FILTERS,
                LLMEndpoint(model="openai/x", api_base=dead.api_base),
                base_model,
                RunStore(str(tmp_path)),
            )
    assert dead.connections == 10
    assert "0 chunks answered and cached so far, a re-run resumes from there" in str(caught.value)


def test_a_closed_port_stops_the_run_after_the_failure_streak(tmp_path, base_model):
    with LLMStub() as stub:
        dead = endpoint(stub)  # the port is closed once the stub stops
    with pytest.raises(LLMUnavailableError, match="3 requests in a row got no answer"):
        generate_pairs(CHUNKS, llm(max_consecutive_failures=3), FILTERS, dead, base_model, RunStore(str(tmp_path)))


def test_the_generate_task_is_not_retried_against_a_dead_endpoint(tmp_path, base_model, prefect_harness):
    store = RunStore(str(tmp_path))
    with DeadEndpoint() as dead:
        state = generate_task(
            store.put_jsonl("corpus", CHUNKS),
            llm(),
            FILTERS,
            "all-MiniLM-L6-v2",
            store.url,
            LLMEndpoint(model="openai/x", api_base=dead.api_base),
            return_state=True,
        )
    assert state.is_failed() and "10 requests in a row got no answer" in state.message
    assert dead.connections == 10  # one task attempt: Prefect's retries would have made 30


def test_a_chunk_fraction_that_picks_no_chunk_fails_before_any_llm_call(tmp_path, prefect_harness):
    store = RunStore(str(tmp_path))
    with LLMStub() as stub:
        state = generate_task(
            store.put_jsonl("corpus", CHUNKS),
            llm(chunk_fraction=1e-6),
            FILTERS,
            "all-MiniLM-L6-v2",
            store.url,
            endpoint(stub),
            return_state=True,
        )
        assert state.is_failed() and "llm.chunk_fraction 1e-06 picks none of the 12 chunks" in state.message
        assert stub.count() == 0


def test_a_chunk_streak_of_rejections_stops_the_run(tmp_path, base_model):
    with LLMStub(fault_rates={"400": 1.0}) as stub:
        with pytest.raises(LLMRejectedError, match="3 chunks in a row failed"):
            generate_pairs(
                CHUNKS,
                llm(max_consecutive_failures=3, max_concurrency=1),
                FILTERS,
                endpoint(stub),
                base_model,
                RunStore(str(tmp_path)),
            )
        assert stub.count() == 3


def test_crash_halfway_resumes_paying_only_for_the_rest(tmp_path, base_model):
    store, settings = RunStore(str(tmp_path)), llm(max_concurrency=2)

    async def crash_after(n_cached: int) -> None:
        run = asyncio.create_task(collect_answers(CHUNKS, settings, endpoint(stub), store))
        while len(cached_keys(store)) < n_cached:
            await asyncio.sleep(0.01)
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run

    with LLMStub(latency_s=0.05) as stub:
        asyncio.run(crash_after(5))
        done = cached_keys(store)
        assert 5 <= len(done) < 12
        stub.reset()
        result = generate_pairs(CHUNKS, settings, FILTERS, endpoint(stub), base_model, store)
        asked = set(stub.chunks_seen)
    remaining = {c["text"] for c in CHUNKS if cache_key(c["text"], settings) not in done}
    assert asked == remaining and result.stats.llm_calls == len(remaining)
    assert result.stats.cache_hits == len(done) and result.stats.chunks_answered == 12


def test_parse_questions_is_tolerant():
    assert parse_questions('```json\n{"questions": ["a b c", "d e f"]}\n```') == ["a b c", "d e f"]
    assert parse_questions('Sure! {"queries": [{"question": "x  y"}]} hope that helps') == ["x y"]
    assert parse_questions('Here: ["one", "two", "one"]') == ["one", "two"]
    for bad in ("Sure! Here are some questions: a; b", '{"questions": []}', "{not json"):
        with pytest.raises(MalformedAnswer):
            parse_questions(bad)


def test_filters_drop_with_reasons(base_model):
    texts = {c["chunk_id"]: c["text"] for c in CHUNKS}
    volcano, bees = CHUNKS[0]["chunk_id"], CHUNKS[1]["chunk_id"]
    rows = [
        ("why do volcanoes erupt", volcano),
        ("lava?", volcano),  # too short
        ("volcano " * 60, volcano),  # too long
        ("when magma rises through the crust and dissolved gases force molten rock ash", volcano),  # 12 copied words
        ("Why do VOLCANOES erupt?!", volcano),  # exact duplicate after normalising
        ("how do honeybees tell hive mates where the flowers are", bees),
        ("how do honeybees tell hive mates where flowers are", bees),  # Jaccard 9/10
        ("how does a volcano erupt with magma and gas", bees),  # own chunk is not in the top 3
    ]
    candidates = [{"query": q, "chunk_id": c, "doc_id": "d"} for q, c in rows]
    kept, dropped = filter_questions(candidates, texts, FILTERS, base_model)
    assert [k["query"] for k in kept] == [rows[0][0], rows[5][0], rows[7][0]]
    assert [d["reason"] for d in dropped] == [
        "too short",
        "too long",
        "copies the passage",
        "duplicate",
        "near duplicate",
    ]
    assert [passes_roundtrip(k, FILTERS.roundtrip_top_k) for k in kept] == [True, True, False]


def test_the_roundtrip_filter_reuses_the_corpus_embeddings_and_ranks_as_if_it_embedded_them(
    base_model, store, monkeypatch
):
    from domain_embed.tasks.embedding.corpus import corpus_embeddings
    from domain_embed.tasks.questions import filters as embed  # where the filter finds embed_texts

    texts = {c["chunk_id"]: c["text"] for c in CHUNKS}
    candidates = [
        {"query": f"what is said about {text.split()[0].lower()}", "chunk_id": cid, "doc_id": "d"}
        for cid, text in texts.items()
    ]
    computed, _ = filter_questions(candidates, texts, FILTERS, base_model)
    vectors = read_npy(corpus_embeddings(store.put_jsonl("corpus", CHUNKS), base_model, store))
    embedded: list[str] = []
    real_embed = embed.embed_texts
    monkeypatch.setattr(
        embed, "embed_texts", lambda folder, batch, **kw: embedded.extend(batch) or real_embed(folder, batch, **kw)
    )
    reused, _ = filter_questions(candidates, texts, FILTERS, base_model, vectors)
    assert [r["base_rank"] for r in reused] == [r["base_rank"] for r in computed]
    assert sum(r["base_rank"] > 0 for r in reused) >= 1  # not all trivially first
    assert embedded == [c["query"] for c in candidates]  # only the questions: no passage embedded again
    with pytest.raises(ValueError, match="11 chunk embeddings for 12 chunks"):
        filter_questions(candidates, texts, FILTERS, base_model, vectors[:11])


def test_near_duplicate_index_matches_brute_force():
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(14)]
    sets = [set(rng.sample(vocab, rng.randint(1, 6))) for _ in range(400)]
    index, kept_fast = NearDuplicateIndex(0.6, sets), []
    for words in sets:
        if not index.find(words):
            index.add(words)
            kept_fast.append(words)
    kept_slow: list[set] = []
    for words in sets:
        if not any(len(words & o) / len(words | o) >= 0.6 for o in kept_slow):
            kept_slow.append(words)
    assert kept_fast == kept_slow and 10 < len(kept_slow) < 400


def test_prefect_never_retries_what_the_llm_client_already_retried():
    from prefect.states import Failed

    from domain_embed.tasks.core.faults import retry_if_transient

    assert not retry_if_transient(None, None, Failed(data=LLMTransientError("gave up after 6 attempts")))
    assert not retry_if_transient(None, None, Failed(data=LLMRejectedError("bad request")))
    assert not retry_if_transient(None, None, Failed(data=LLMFatalError("401")))
    assert retry_if_transient(None, None, Failed(data=ConnectionError("run store unreachable")))


def test_single_style_parses_one_plain_question():
    from domain_embed.tasks.questions.prompts import MalformedAnswer, parse_single

    assert parse_single("Question: What does VACUUM reclaim? It reclaims space.") == "What does VACUUM reclaim?"
    assert parse_single('1. "How are partial indexes used?"\n2. other') == "How are partial indexes used?"
    assert parse_single("brin index summary ranges") == "brin index summary ranges"
    with pytest.raises(MalformedAnswer):
        parse_single("Yes.")


def test_prompt_style_and_version_follow_the_model():
    from domain_embed.tasks.questions.generate import cache_key
    from domain_embed.tasks.questions.prompts import prompt_style
    from domain_embed.tasks.settings import LLMSettings

    embedded, hosted = LLMSettings(), LLMSettings(model="openai/gpt-4o-mini")
    assert prompt_style(embedded) == "single" and prompt_style(hosted) == "json"
    assert prompt_style(LLMSettings(model="embedded-large")) == "single"
    assert prompt_style(LLMSettings(prompt_style="json")) == "json"
    assert cache_key("text", embedded) != cache_key("text", LLMSettings(prompt_style="json"))


def test_editing_a_prompt_template_misses_the_cache(monkeypatch):
    from domain_embed.tasks.questions import prompts
    from domain_embed.tasks.settings import LLMSettings

    before = {style: cache_key("text", LLMSettings(prompt_style=style)) for style in ("single", "json")}
    monkeypatch.setattr(prompts, "SINGLE_PROMPT", prompts.SINGLE_PROMPT.replace("short", "brief"))
    assert cache_key("text", LLMSettings(prompt_style="single")) != before["single"]
    assert cache_key("text", LLMSettings(prompt_style="json")) == before["json"]
    monkeypatch.setattr(prompts, "USER_PROMPT", prompts.USER_PROMPT + " ")
    assert cache_key("text", LLMSettings(prompt_style="json")) != before["json"]


def test_asking_for_more_candidates_later_pays_only_for_the_extra_ones(tmp_path, base_model):
    store = RunStore(str(tmp_path))
    with LLMStub() as stub:
        first = generate_pairs(CHUNKS[:4], llm(questions_per_chunk=2), FILTERS, endpoint(stub), base_model, store)
        assert first.stats.llm_calls == 4 and first.stats.candidates_per_chunk == 2
        stub.reset()
        more = generate_pairs(
            CHUNKS[:4], llm(questions_per_chunk=2, candidates_per_chunk=4), FILTERS, endpoint(stub), base_model, store
        )
        assert more.stats.llm_calls == 4 and more.stats.cache_hits == 0 and more.stats.questions_raw == 16
        stub.reset()
        fewer = generate_pairs(CHUNKS[:4], llm(questions_per_chunk=1), FILTERS, endpoint(stub), base_model, store)
        assert fewer.stats.llm_calls == 0 and fewer.stats.cache_hits == 4 and fewer.stats.questions_raw == 4
    first_questions = {(r["chunk_id"], r["query"]) for r in read_jsonl(first.pairs)}
    assert first_questions <= {(r["chunk_id"], r["query"]) for r in read_jsonl(more.pairs)}
