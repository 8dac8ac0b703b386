"""The multi-domain real-question benchmark: FAQs that ship in Debian packages, one domain each.

Each domain's queries are its FAQ's own questions (written by people, not by this project); a question's relevant
passages are its answer (cut into passages of a few hundred words, all relevant). The corpus adds sections of other
documentation of the same software as distractors. The training documents are that corpus as a user would give it:
the answers without their questions (titles of other questions scrubbed from them), the distractor documents as
they ship or as extracted text. A query whose text still occurs in a training document is dropped, with the reason.

    python -m benchmarks.faq.domains --out DIR [--domains perl r ...]

writes DIR/docs/<domain>/ (training documents) and DIR/<domain>/beir-{train,dev,test}/ (BEIR layout) per domain;
whole FAQ sections go to one split (split_by_section).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from benchmarks.faq import debian as debian_faq
from benchmarks.faq.common import asks, assemble
from benchmarks.faq.debian import Benchmark, leaked_queries
from benchmarks.faq.html_faqs import html_reference, r_faq, sqlite_faq
from benchmarks.faq.plain import git_faq, git_reference, info_reference, sed_faq, zsh_faq
from benchmarks.faq.pod import perl_faq, pod_reference
from benchmarks.tiny import parse_args

PERL_POD_GLOB = "/usr/share/perl/5.*/pod"
PERL_LIB_GLOBS = ("/usr/share/perl/5.*", "/usr/share/perl5")  # where the further FAQs may lie (newest first)
PERL_MORE_FAQS = ("pod/perlunifaq.pod", "Net/libnetFAQ.pod", "ExtUtils/MakeMaker/FAQ.pod")  # relative to those
R_MANUALS = (Path("/usr/share/R/doc/manual"), Path("/usr/share/doc/r-doc-html/manual"))
SQLITE_DIR = Path("/usr/share/doc/sqlite3")
GIT_DIR = Path("/usr/share/doc/git-doc")
ZSH_DIR = Path("/usr/share/doc/zsh-common")
SED_FAQ = Path("/usr/share/doc/sed/sedfaq.txt.gz")
SED_INFO = Path("/usr/share/info/sed.info.gz")

PERL_REFERENCE = ("perlsyn", "perldata", "perlop", "perlsub", "perlvar", "perlre")
R_REFERENCE = ("R-intro.html",)
SQLITE_REFERENCE = (
    "datatype3",
    "lockingv3",
    "wal",
    "foreignkeys",
    "lang_transaction",
    "queryplanner",
    "isolation",
    "atomiccommit",
    "autoinc",
    "quirks",
    "whentouse",
    "limits",
)
GIT_REFERENCE = (
    "git-commit",
    "git-rebase",
    "git-push",
    "git-merge",
    "git-reset",
    "git-stash",
    "git-fetch",
    "gitignore",
)
ZSH_REFERENCE = (
    "Shell-Grammar",
    "Redirection",
    "Expansion",
    "Prompt-Expansion",
    "Functions",
    "Files",
    "Conditional-Expressions",
    "Arithmetic-Evaluation",
    "Jobs-_0026-Signals",
    "Invocation",
)
SED_INFO_SKIPPED = ("Top", "GNU Free Documentation License", "Concept Index", "Command and Option Index")

PACKAGES: dict[str, tuple[str, ...]] = {
    "debian": debian_faq.PACKAGES,
    "perl": ("perl-doc",),
    "r": ("r-doc-html",),
    "sqlite": ("sqlite3-doc",),
    "git": ("git-doc",),
    "zsh": ("zsh-common", "zsh-doc"),
    "sed": ("sed",),
}
PROBES: dict[str, tuple[str, ...]] = {  # files whose absence means the domain's packages are missing
    "debian": (str(debian_faq.FAQ_DIR / "index.en.html"), str(debian_faq.REFERENCE_DIR / "index.en.html")),
    "perl": (f"{PERL_POD_GLOB}/perlfaq4.pod", f"{PERL_POD_GLOB}/perlop.pod"),
    "r": ("/usr/share/R/doc/manual/R-FAQ.html",),
    "sqlite": (str(SQLITE_DIR / "faq.html"),),
    "git": (str(GIT_DIR / "gitfaq.txt"),),
    "zsh": (str(ZSH_DIR / "FAQ.gz"), str(ZSH_DIR / "html" / "Expansion.html")),
    "sed": (str(SED_FAQ),),
}
SHARES = {"train": 0.2, "dev": 0.2, "test": 0.6}


def perl_pod_dir() -> Path:
    """The installed perl-doc pod folder (its version in the path)."""
    found = sorted(glob.glob(f"{PERL_POD_GLOB}/perlfaq4.pod"))
    if not found:
        raise FileNotFoundError(f"no perlfaq4.pod under {PERL_POD_GLOB}: install perl-doc")
    return Path(found[-1]).parent


def perl_more_faqs(lib_dirs: list[Path]) -> list[tuple[Path, str]]:
    """(path, name) of each further perl FAQ (PERL_MORE_FAQS) found, from the first of lib_dirs that holds it; the
    name is its path without suffix or 'pod/' ('perlunifaq', 'Net-libnetFAQ', 'ExtUtils-MakeMaker-FAQ')."""
    found = []
    for rel in PERL_MORE_FAQS:
        path = next((d / rel for d in lib_dirs if (d / rel).is_file()), None)
        if path:
            found.append((path, rel.removeprefix("pod/").removesuffix(".pod").replace("/", "-")))
    return found


def build_perl(pod_dir: Path | None = None, lib_dirs: list[Path] | None = None) -> Benchmark:
    """perlfaq1..9, perlunifaq, Net::libnetFAQ and ExtUtils::MakeMaker::FAQ questions over their answers and a few
    core pods. lib_dirs: where the further FAQs are looked for (default: the pod folder's parent, then
    PERL_LIB_GLOBS)."""
    pod_dir = pod_dir or perl_pod_dir()
    if lib_dirs is None:
        lib_dirs = [pod_dir.parent] + [
            Path(d) for g in PERL_LIB_GLOBS for d in sorted(glob.glob(g), reverse=True) if Path(d) != pod_dir.parent
        ]
    pages = [perl_faq(p) for p in sorted(pod_dir.glob("perlfaq[1-9].pod"))]
    pages += [perl_faq(path, name, items=True, question=asks) for path, name in perl_more_faqs(lib_dirs)]
    return assemble(
        pages, [pod_reference(pod_dir / f"{n}.pod") for n in PERL_REFERENCE if (pod_dir / f"{n}.pod").is_file()]
    )


def build_r(manual: Path | None = None) -> Benchmark:
    """The R FAQ's questions over its answers and the sections of An Introduction to R."""
    manual = manual or next((d for d in R_MANUALS if (d / "R-FAQ.html").is_file()), R_MANUALS[0])
    refs = [
        html_reference(manual / n, f"r-{n.removesuffix('.html')}", ("h2", "h3", "h4"))
        for n in R_REFERENCE
        if (manual / n).is_file()
    ]
    return assemble([r_faq(manual / "R-FAQ.html")], refs)


def build_sqlite(folder: Path = SQLITE_DIR) -> Benchmark:
    """The SQLite FAQ's questions over its answers and sections of a dozen SQLite documentation pages."""
    refs = [
        html_reference(folder / f"{n}.html", f"sqlite-{n}")
        for n in SQLITE_REFERENCE
        if (folder / f"{n}.html").is_file()
    ]
    return assemble([sqlite_faq(folder / "faq.html")], refs)


def build_git(folder: Path = GIT_DIR) -> Benchmark:
    """gitfaq's questions over its answers and the sections of a few git manual pages."""
    refs = [git_reference(folder / f"{n}.txt") for n in GIT_REFERENCE if (folder / f"{n}.txt").is_file()]
    return assemble([git_faq(folder / "gitfaq.txt")], refs)


def build_zsh(folder: Path = ZSH_DIR) -> Benchmark:
    """The zsh FAQ's questions over its answers and the sections of ten zsh manual pages."""
    html_dir = folder / "html"
    refs = [
        html_reference(html_dir / f"{n}.html", f"zsh-{n}") for n in ZSH_REFERENCE if (html_dir / f"{n}.html").is_file()
    ]
    return assemble([zsh_faq(folder / "FAQ.gz")], refs)


def build_sed(faq: Path = SED_FAQ, info: Path | None = SED_INFO) -> Benchmark:
    """The sed FAQ's questions over its answers and the nodes of the sed manual (info), when installed."""
    refs = [info_reference(info, "sed-info", SED_INFO_SKIPPED)] if info and info.is_file() else []
    return assemble([sed_faq(faq)], refs)


DOMAINS: dict[str, Callable[[], Benchmark]] = {
    "debian": debian_faq.build,
    "perl": build_perl,
    "r": build_r,
    "sqlite": build_sqlite,
    "git": build_git,
    "zsh": build_zsh,
    "sed": build_sed,
}


def ensure_packages(names: Iterable[str]) -> None:
    """Install (apt-get) the packages of the named domains whose files are missing."""
    missing = [pkg for name in names if not all(glob.glob(p) for p in PROBES[name]) for pkg in PACKAGES[name]]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise SystemExit(f"these Debian packages are needed: {' '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, stdout=subprocess.DEVNULL)


def stable_hash(name: str) -> int:
    """A hash of a name that does not change between runs."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:16], 16)


def split_by_section(benchmark: Benchmark, shares: dict[str, float] = SHARES) -> dict[str, str]:
    """query id -> split. Whole sections go to one split; sections are taken largest first (ties in the order of a
    stable hash of their name) and each goes to the split currently furthest below its share of queries
    (deterministic, balanced: a chapter holding most of a FAQ's questions can only fit the largest share)."""
    members: dict[str, list[str]] = {}
    for qid in benchmark.queries:
        members.setdefault(benchmark.sections.get(qid, qid), []).append(qid)
    total, taken = len(benchmark.queries), dict.fromkeys(shares, 0)
    split: dict[str, str] = {}
    for name in sorted(members, key=lambda n: (-len(members[n]), stable_hash(n), n)):
        part = max(shares, key=lambda s: shares[s] * total - taken[s])
        taken[part] += len(members[name])
        split.update(dict.fromkeys(members[name], part))
    return split


def write_beir(folder: Path, corpus: str, benchmark: Benchmark, ids: list[str]) -> None:
    """One BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv for the given queries."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text(corpus, encoding="utf-8")
    rows = "".join(json.dumps({"_id": q, "text": benchmark.queries[q]}, ensure_ascii=False) + "\n" for q in ids)
    (folder / "queries.jsonl").write_text(rows, encoding="utf-8")
    qrels = "".join(f"{q}\t{pid}\t1\n" for q in ids for pid in benchmark.relevant[q])
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels, encoding="utf-8")


def write_domain(name: str, benchmark: Benchmark, split: dict[str, str], out: Path) -> dict:
    """Writes out/docs/<name>/... (training documents) and out/<name>/beir-{train,dev,test}/ (corpus.jsonl,
    queries.jsonl, qrels/test.tsv in BEIR layout; the same corpus in each); asserts no leak; returns counts
    {passages, documents, queries_dropped, train_queries, dev_queries, test_queries}."""
    leaks = leaked_queries(benchmark.queries, benchmark.documents)
    if leaks:
        raise AssertionError(
            f"{len(leaks)} queries appear in training documents, e.g. {benchmark.queries[leaks[0]]!r}"
        )
    unsplit = [q for q in benchmark.queries if split.get(q) not in SHARES]
    if unsplit:
        raise ValueError(f"{len(unsplit)} queries have no train/dev/test split, e.g. {unsplit[0]!r}")
    docs = out / "docs" / name
    shutil.rmtree(docs, ignore_errors=True)
    for rel, content in benchmark.documents.items():
        (docs / rel).parent.mkdir(parents=True, exist_ok=True)
        (docs / rel).write_text(content, encoding="utf-8")
    corpus = "".join(
        json.dumps({"_id": pid, "title": t, "text": x}, ensure_ascii=False) + "\n"
        for pid, (t, x) in benchmark.passages.items()
    )
    counts = {
        "passages": len(benchmark.passages),
        "documents": len(benchmark.documents),
        "queries_dropped": len(benchmark.dropped_queries),
    }
    for part in SHARES:
        ids = [q for q in benchmark.queries if split[q] == part]
        write_beir(out / name / f"beir-{part}", corpus, benchmark, ids)
        counts[f"{part}_queries"] = len(ids)
    return counts


def build_all(names: list[str] | None, out: Path, max_documents: int | None = None) -> dict[str, dict]:
    """Ensure the packages, then build, split and write each named domain (all when None); counts per domain.
    max_documents keeps only the first training documents of each domain (a tiny run; every passage stays scored)."""
    names = list(names or DOMAINS)
    ensure_packages(names)
    counts = {}
    for name in names:
        benchmark = DOMAINS[name]()
        if max_documents is not None:
            benchmark.documents = dict(list(benchmark.documents.items())[:max_documents])
        counts[name] = write_domain(name, benchmark, split_by_section(benchmark), out)
    return counts


def main() -> None:
    """Command line: build the domains into --out and print their counts as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="Output folder")
    parser.add_argument("--domains", nargs="*", choices=list(DOMAINS), help="Domains to build (default: all)")
    args = parse_args(parser, {"domains": ["sqlite"]})
    print(json.dumps(build_all(args.domains, Path(args.out))))


if __name__ == "__main__":
    main()
