"""The multi-domain FAQ benchmark's builder: FAQ questions become queries, answers passages, no query text reaches
training, and whole FAQ sections go to one split."""

from __future__ import annotations

import json

import pytest

from benchmarks.faq import common as faq_common
from benchmarks.faq import domains as faq_domains
from benchmarks.faq.debian import Benchmark, leaked_queries, normalize

POD = """=head1 NAME

perlfaq4 - Data Manipulation

=head1 Data: Numbers

=head2 Why is int() broken?

Your C<int()> is most probably working just fine. See
L<perlfaq4/"How do I round a number?"> and E<lt>stdinE<gt>.

=head2 How do I round a number?

Use C<< sprintf("%.0f", $x) >> or B<printf>:


    printf("%.2f", 3.14159);

=head1 Data: Strings

=head2 How do I reverse a string?

Use reverse() in scalar context, as documented in L<perlfunc/reverse>.

=head2 Credits

Thanks to everyone on the list.

=cut
"""

ZSH = """Contents:
Chapter 1:  Introducing zsh
1.1. What is it?
--- End of Contents ---

Chapter 1: Introducing zsh

1.1: Sources of information

  The web site has the manual and this FAQ.

1.2: Why does zsh not split $var?

  Because SH_WORD_SPLIT is off; see question 1.3 and the
  entry "How do I make   a login shell?" below.

Chapter 2: Daily use

2.1: How do I make a login shell?

  Use chsh, or exec zsh from your old shell's startup file.

Acknowledgments:

Thanks to the list.
"""

ITEM_POD = """=head1 NAME

ExtUtils::MakeMaker::FAQ - Frequently Asked Questions About MakeMaker

=head1 DESCRIPTION

=head2 Module Installation

=over 4

=item How do I keep from installing man pages?

Set C<INSTALLMAN1DIR> to C<none>:

=over 8

=item * pure perl

=item XSMULTI

Several XS files in one folder.

=back

=item PREFIX vs INSTALL_BASE

They differ.

=back

=head1 Using Net::FTP

=head2 Where can I get the latest libnet release

From CPAN.

=head2 How can I get the size of a file ?

=head2 My proxy does not listen on port 21

Use the Port option.

=cut
"""

SEDFAQ = """Archive-Name: editor-faq/sed

CONTENTS

1. GENERAL INFORMATION
1.1. Introduction - How this FAQ is organized
2.1. What is sed?

------------------------------

1. GENERAL INFORMATION

1.1. Introduction - How this FAQ is organized

   This FAQ answers common questions about sed.

------------------------------

2. BASIC SED

2.1. What is sed?

   A stream editor.

   CHANGING STRINGS

2.2. How do I read environment variables with
     sed?

2.2.1. - on Unix platforms

   Use double quotes: sed "s/x/$HOME/".

5.2. I'm using 'p' to print, but I have duplicate lines sometimes.

   Use -n.

[end-of-file]
"""

INFO = """This is sed.info, produced by makeinfo.

\x1f
File: sed.info,  Node: Top,  Next: Introduction,  Up: (dir)

GNU sed
*******

* Menu:

* Introduction::
\x1f
File: sed.info,  Node: Introduction,  Next: Exit status,  Prev: Top,  Up: Top

1 Introduction
**************

'sed' is a stream editor.

* Menu:

* Overview::
\x1f
File: sed.info,  Node: Exit status,  Prev: Introduction,  Up: Top

2.3 Exit status
===============

An exit status of zero indicates success.
\x1f
Tag Table:
Node: Top105
\x1f
End Tag Table
"""


def test_perlfaq_questions_are_head2_headings_and_answers_their_relevant_passages(tmp_path):
    (tmp_path / "perlfaq4.pod").write_text(POD)
    built = faq_domains.assemble([faq_domains.perl_faq(tmp_path / "perlfaq4.pod")], [])
    assert sorted(built.queries.values()) == [
        "How do I reverse a string?",
        "How do I round a number?",
        "Why is int() broken?",
    ]
    by_text = {q: qid for qid, q in built.queries.items()}
    answer = built.passages[built.relevant[by_text["How do I round a number?"]][0]][1]
    assert 'sprintf("%.0f", $x)' in answer and 'printf("%.2f", 3.14159);' in answer  # codes and verbatim rendered
    assert "working just fine" in built.passages[built.relevant[by_text["Why is int() broken?"]][0]][1]
    assert built.sections[by_text["Why is int() broken?"]] == "perlfaq4: Data: Numbers"
    assert built.sections[by_text["How do I reverse a string?"]] == "perlfaq4: Data: Strings"
    doc = built.documents["faq/perlfaq4.txt"]
    assert "<stdin>" in doc and "Thanks to everyone" in doc  # entities rendered; non-questions stay as distractors
    assert "Why is int" not in doc and "round a number" not in doc  # headings and the linked title are gone
    assert leaked_queries(built.queries, built.documents) == [] and all(t == "" for t, _ in built.passages.values())


def test_item_pods_give_named_outer_items_and_asking_head2s_as_questions_split_by_head1(tmp_path):
    (tmp_path / "FAQ.pod").write_text(ITEM_POD)
    page = faq_domains.perl_faq(tmp_path / "FAQ.pod", "ExtUtils-MakeMaker-FAQ", items=True, question=faq_domains.asks)
    built = faq_domains.assemble([page], [])
    by_text = {q: qid for qid, q in built.queries.items()}
    assert sorted(by_text) == ["How do I keep from installing man pages?", "Where can I get the latest libnet release"]
    answer = built.passages[built.relevant[by_text["How do I keep from installing man pages?"]][0]][1]
    assert "INSTALLMAN1DIR" in answer and "pure perl" in answer and "Several XS files" in answer  # nested list: text
    assert "They differ" not in answer  # the next named item is its own entry (not a question: a distractor)
    assert built.sections[by_text["How do I keep from installing man pages?"]] == "ExtUtils-MakeMaker-FAQ"
    unit = built.sections[by_text["Where can I get the latest libnet release"]]
    assert unit == "ExtUtils-MakeMaker-FAQ: Using Net::FTP"
    doc = built.documents["faq/ExtUtils-MakeMaker-FAQ.txt"]
    assert "They differ" in doc and "Use the Port option" in doc and "installing man pages" not in doc
    plain = faq_domains.perl_faq(tmp_path / "FAQ.pod")  # perlfaq rules: no items, question marks only
    assert [next(s.title for s in plain.sections if s.sid == q) for q in plain.questions] == [
        "How can I get the size of a file ?"
    ]


def test_build_perl_adds_the_further_faqs_found_under_the_library_folders(tmp_path):
    (tmp_path / "pod").mkdir()
    (tmp_path / "pod" / "perlfaq4.pod").write_text(POD)
    (tmp_path / "lib" / "ExtUtils" / "MakeMaker").mkdir(parents=True)
    (tmp_path / "lib" / "ExtUtils" / "MakeMaker" / "FAQ.pod").write_text(ITEM_POD)
    built = faq_domains.build_perl(tmp_path / "pod", [tmp_path, tmp_path / "lib"])
    assert sorted(built.documents) == ["faq/ExtUtils-MakeMaker-FAQ.txt", "faq/perlfaq4.txt"]
    assert len(built.queries) == 5 and "ExtUtils-MakeMaker-FAQ" in set(built.sections.values())


def test_sed_faq_numbered_entries_that_ask_are_queries_with_their_sub_entries_split_by_chapter(tmp_path):
    (tmp_path / "sedfaq.txt").write_text(SEDFAQ)
    built = faq_domains.assemble([faq_domains.sed_faq(tmp_path / "sedfaq.txt")], [])
    assert built.queries == {
        "sed-faq:2.1": "What is sed?",
        "sed-faq:2.2": "How do I read environment variables with sed?",  # a title running on to the next line
    }
    assert built.sections == {"sed-faq:2.1": "BASIC SED", "sed-faq:2.2": "BASIC SED"}
    assert built.relevant["sed-faq:2.2"] == ["sed-faq:2.2.1"]  # its sub-entry's answer
    assert built.passages["sed-faq:2.1"][1] == "A stream editor."  # group headings and separators left out
    assert "sed-faq:1.1" in built.passages and "sed-faq:5.2" in built.passages  # not questions: distractors
    doc = built.documents["faq/sedfaq.txt"]
    assert "What is sed" not in doc and "CONTENTS" not in doc and "end-of-file" not in doc and "Use -n." in doc


def test_info_reference_gives_one_section_per_node_without_menus(tmp_path):
    (tmp_path / "sed.info").write_text(INFO)
    ref = faq_domains.info_reference(tmp_path / "sed.info", "sed-info", ("Top",))
    assert [(s.sid, s.title, s.text) for s in ref.sections] == [
        ("sed-info:Introduction", "1 Introduction", "'sed' is a stream editor."),
        ("sed-info:Exit-status", "2.3 Exit status", "An exit status of zero indicates success."),
    ]
    assert ref.name == "reference/sed.info.txt" and "Menu" not in ref.content and "Tag Table" not in ref.content
    built = faq_domains.assemble([], [ref])
    assert built.passages["sed-info:Exit-status"] == ("Exit status", "An exit status of zero indicates success.")


def test_zsh_faq_entries_that_ask_are_queries_split_by_chapter(tmp_path):
    (tmp_path / "FAQ").write_text(ZSH)
    built = faq_domains.assemble([faq_domains.zsh_faq(tmp_path / "FAQ")], [])
    assert built.queries == {
        "zsh-faq:1.2": "Why does zsh not split $var?",
        "zsh-faq:2.1": "How do I make a login shell?",
    }
    assert built.sections == {"zsh-faq:1.2": "Introducing zsh", "zsh-faq:2.1": "Daily use"}
    assert "chsh" in built.passages[built.relevant["zsh-faq:2.1"][0]][1]
    assert (
        "zsh-faq:1.1" in built.passages and "zsh-faq:acknowledgments" in built.passages
    )  # not questions: distractors
    doc = normalize(built.documents["faq/FAQ.txt"])
    assert "sources of information" not in doc and "how do i make a login shell" not in doc and "question 1 3" in doc


def test_a_query_found_in_a_distractor_document_is_dropped_with_its_reason(tmp_path):
    (tmp_path / "FAQ").write_text(ZSH)
    ref = faq_common.Reference("reference/manual.txt", "Why does zsh not split $var? It is an option.", [])
    built = faq_domains.assemble([faq_domains.zsh_faq(tmp_path / "FAQ")], [ref])
    assert built.dropped_queries == {"zsh-faq:1.2": "its text occurs in reference/manual.txt"}
    assert list(built.queries) == ["zsh-faq:2.1"] and list(built.sections) == ["zsh-faq:2.1"]


def test_long_answers_become_several_relevant_passages():
    built = Benchmark(passages={}, queries={}, relevant={}, documents={})
    ids = faq_common.add_passages(built, "q", "", "\n\n".join(" ".join(["word"] * 100) for _ in range(7)))
    assert ids == ["q#1", "q#2", "q#3", "q#4"] and all(len(built.passages[i][1].split()) <= 250 for i in ids)


def sectioned(sizes: dict[str, int]) -> Benchmark:
    queries = {f"{name}-{i}": f"question {name} {i}" for name, size in sizes.items() for i in range(size)}
    built = Benchmark(
        passages={"p": ("", "an answer")}, queries=queries, relevant={q: ["p"] for q in queries}, documents={}
    )
    built.sections = {q: q.rsplit("-", 1)[0] for q in queries}
    return built


def test_split_by_section_keeps_sections_whole_and_respects_the_shares():
    built = sectioned({f"s{i}": 1 + i % 7 for i in range(60)})
    split = faq_domains.split_by_section(built)
    assert split == faq_domains.split_by_section(sectioned({f"s{i}": 1 + i % 7 for i in range(60)}))  # deterministic
    for name in {s for s in built.sections.values()}:
        assert len({split[q] for q, s in built.sections.items() if s == name}) == 1
    shares = {part: sum(v == part for v in split.values()) / len(split) for part in ("train", "dev", "test")}
    assert abs(shares["train"] - 0.2) < 0.03 and abs(shares["dev"] - 0.2) < 0.03 and abs(shares["test"] - 0.6) < 0.03


def test_a_dominant_section_goes_to_the_largest_share():
    split = faq_domains.split_by_section(sectioned({"big": 30, "a": 5, "b": 5, "c": 5, "d": 5}))
    assert {split[f"big-{i}"] for i in range(30)} == {"test"} and sum(v == "test" for v in split.values()) == 30


def test_write_domain_refuses_a_leaked_query_and_writes_beir_folders(tmp_path):
    built = Benchmark(
        passages={"a": ("", "Use chsh to change the shell."), "b": ("Grammar", "Pipelines join commands.")},
        queries={"q1": "How do I change my shell?", "q2": "What joins commands?"},
        relevant={"q1": ["a"], "q2": ["b"]},
        documents={
            "faq/FAQ.txt": "Use chsh to change the shell.\n",
            "reference/grammar.html": "<p>Pipelines join.</p>",
        },
    )
    split = {"q1": "test", "q2": "train"}
    leaky = Benchmark(**{**built.__dict__, "documents": {"faq/FAQ.txt": "How do I change my shell? Use chsh."}})
    with pytest.raises(AssertionError, match="appear in training documents"):
        faq_domains.write_domain("zsh", leaky, split, tmp_path)
    counts = faq_domains.write_domain("zsh", built, split, tmp_path)
    assert counts == {
        "passages": 2,
        "documents": 2,
        "queries_dropped": 0,
        "train_queries": 1,
        "dev_queries": 0,
        "test_queries": 1,
    }
    assert sorted(p.relative_to(tmp_path / "docs").as_posix() for p in (tmp_path / "docs").rglob("*.*")) == [
        "zsh/faq/FAQ.txt",
        "zsh/reference/grammar.html",
    ]
    for part, expected in (("train", ["q2"]), ("dev", []), ("test", ["q1"])):
        folder = tmp_path / "zsh" / f"beir-{part}"
        assert [json.loads(line)["_id"] for line in (folder / "corpus.jsonl").read_text().splitlines()] == ["a", "b"]
        assert [json.loads(line)["_id"] for line in (folder / "queries.jsonl").read_text().splitlines()] == expected
        rows = (folder / "qrels" / "test.tsv").read_text().splitlines()
        assert rows[0] == "query-id\tcorpus-id\tscore" and len(rows) == 1 + len(expected)
