"""BEIR-layout datasets: load and validate a user's labelled set, export the synthetic eval split."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..core.objects import sha256_bytes, sha256_file, stable_hash
from ..core.store import atomic_write

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_FILE = "qrels/test.tsv"
QRELS_HEADER = ("query-id", "corpus-id", "score")


class DatasetError(ValueError):
    """A malformed BEIR-layout dataset; the message names the file and line."""


@dataclass
class BeirDataset:
    """A validated dataset: passages to embed (and their bare text), queries with relevant passages, qrels."""

    name: str
    corpus: dict[str, str]
    texts: dict[str, str]
    queries: dict[str, str]
    relevant: dict[str, set[str]]
    ignored_queries: int = 0
    qrels: int = 0


def passage_text(title: str, text: str) -> str:
    """The text embedded for a passage: title and text on two lines when there is a title."""
    return f"{title}\n{text}" if title.strip() else text


def _read_jsonl(path: Path, label: str) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; bad JSON and non-objects raise DatasetError."""
    if not path.is_file():
        raise DatasetError(f"{label}: file not found")
    rows = []
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{label} line {number}: invalid JSON ({exc.msg})") from exc
            if not isinstance(obj, dict):
                raise DatasetError(f"{label} line {number}: expected a JSON object, got {type(obj).__name__}")
            rows.append((number, obj))
    return rows


def _records(path: Path, label: str) -> dict[str, tuple[str, str]]:
    """id -> (title, text) for a corpus or queries file, checking ids and fields line by line."""
    records: dict[str, tuple[str, str]] = {}
    first_line: dict[str, int] = {}
    for number, obj in _read_jsonl(path, label):
        raw_id = obj.get("_id")
        if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool) or str(raw_id).strip() == "":
            raise DatasetError(f"{label} line {number}: missing or empty '_id'")
        doc_id = str(raw_id)
        text, title = obj.get("text"), obj.get("title") or ""
        if not isinstance(text, str):
            raise DatasetError(f"{label} line {number}: missing 'text' (string) for _id '{doc_id}'")
        if not isinstance(title, str):
            raise DatasetError(f"{label} line {number}: 'title' must be a string for _id '{doc_id}'")
        if not (title + text).strip():
            raise DatasetError(f"{label} line {number}: empty text for _id '{doc_id}'")
        if doc_id in records:
            raise DatasetError(f"{label} line {number}: duplicate _id '{doc_id}' (first on line {first_line[doc_id]})")
        records[doc_id] = (title, text)
        first_line[doc_id] = number
    return records


def _read_qrels(path: Path, corpus: Collection[str], queries: Collection[str]) -> tuple[dict[str, set[str]], int]:
    """Relevant corpus ids per query (score > 0) and the number of judgement lines."""
    if not path.is_file():
        raise DatasetError(f"{QRELS_FILE}: file not found")
    relevant: dict[str, set[str]] = {}
    lines = 0
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            columns = [c.strip() for c in line.rstrip("\r\n").split("\t")]
            if number == 1 and len(columns) == 3 and not columns[2].lstrip("-").isdigit():
                continue  # header line (query-id, corpus-id, score)
            if len(columns) != 3:
                raise DatasetError(
                    f"{QRELS_FILE} line {number}: expected 3 tab-separated columns "
                    f"(query-id, corpus-id, score), got {len(columns)}"
                )
            query_id, corpus_id, score_text = columns
            try:
                score = int(score_text)
            except ValueError:
                raise DatasetError(f"{QRELS_FILE} line {number}: score '{score_text}' is not an integer") from None
            if query_id not in queries:
                raise DatasetError(f"{QRELS_FILE} line {number}: query-id '{query_id}' is not in {QUERIES_FILE}")
            if corpus_id not in corpus:
                raise DatasetError(f"{QRELS_FILE} line {number}: corpus-id '{corpus_id}' is not in {CORPUS_FILE}")
            lines += 1
            if score > 0:
                relevant.setdefault(query_id, set()).add(corpus_id)
    if not relevant:
        raise DatasetError(f"{QRELS_FILE}: no relevant judgement (a line with score > 0)")
    return relevant, lines


def load_beir(folder: str) -> BeirDataset:
    """Load and validate a BEIR-layout folder; queries without a relevant passage are dropped and counted."""
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {folder}")
    passages = _records(root / CORPUS_FILE, CORPUS_FILE)
    if not passages:
        raise DatasetError(f"{CORPUS_FILE}: no passages")
    queries = {qid: text for qid, (_, text) in _records(root / QUERIES_FILE, QUERIES_FILE).items()}
    if not queries:
        raise DatasetError(f"{QUERIES_FILE}: no queries")
    relevant, lines = _read_qrels(root / QRELS_FILE, passages.keys(), queries.keys())
    kept = {qid: text for qid, text in queries.items() if qid in relevant}
    return BeirDataset(
        name=root.resolve().name,
        corpus={pid: passage_text(title, text) for pid, (title, text) in passages.items()},
        texts={pid: text for pid, (_, text) in passages.items()},
        queries=kept,
        relevant=relevant,
        ignored_queries=len(queries) - len(kept),
        qrels=lines,
    )


def beir_fingerprint(folder: str) -> str:
    """Content hash of a BEIR folder's three files (not its path), for cache keys."""
    root = Path(folder)
    return stable_hash({name: sha256_file(root / name) for name in (CORPUS_FILE, QUERIES_FILE, QRELS_FILE)})


def query_ids(texts: list[str]) -> dict[str, str]:
    """Stable id per distinct query text: 'q' + 8 hex of its sha256, longer only on a collision."""
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for text in dict.fromkeys(texts):
        digest = sha256_bytes(text.encode())
        size = 8
        while f"q{digest[:size]}" in taken:
            size += 8
        ids[text] = f"q{digest[:size]}"
        taken.add(ids[text])
    return ids


def pairs_to_queries(pair_rows: list[dict]) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Queries (id -> text) and their relevant chunk ids; identical query texts merge their relevant sets."""
    ids = query_ids([row["query"] for row in pair_rows])
    queries: dict[str, str] = {}
    relevant: dict[str, set[str]] = {}
    for row in pair_rows:
        qid = ids[row["query"]]
        queries[qid] = row["query"]
        relevant.setdefault(qid, set()).add(row["chunk_id"])
    return queries, relevant


def export_beir(corpus_rows: list[dict], pair_rows: list[dict], out_dir: str) -> dict[str, int]:
    """Write chunk rows and (query, chunk) pairs as a BEIR-layout folder; returns what was written."""
    corpus = {}
    for row in corpus_rows:
        record = {"_id": row["chunk_id"], "title": row.get("section") or "", "text": row["text"]}
        corpus.setdefault(row["chunk_id"], record)
    queries, relevant = pairs_to_queries(pair_rows)
    missing = sorted({cid for cids in relevant.values() for cid in cids} - corpus.keys())
    if missing:
        raise ValueError(f"{len(missing)} eval pair chunk_id(s) are not in the corpus, e.g. {missing[0]}")
    qrels = [(qid, cid) for qid in sorted(relevant) for cid in sorted(relevant[qid])]
    root = Path(out_dir)
    _write(root / CORPUS_FILE, _jsonl(corpus.values()))
    _write(root / QUERIES_FILE, _jsonl({"_id": qid, "text": text} for qid, text in queries.items()))
    _write(root / QRELS_FILE, "\t".join(QRELS_HEADER) + "\n" + "".join(f"{q}\t{c}\t1\n" for q, c in qrels))
    return {"passages": len(corpus), "queries": len(queries), "qrels": len(qrels)}


def _jsonl(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _write(path: Path, text: str) -> None:
    atomic_write(str(path), text.encode("utf-8"))
