"""The promotion rule: a new model replaces the current one only if it is not worse on the same eval split."""

from __future__ import annotations

from domain_embed.tasks.publishing.promote import decide, read_current, write_current


def results(tuned: float, current: float | None = None) -> dict:
    out = {"base": {384: {"ndcg@10": 0.5}}, "tuned": {384: {"ndcg@10": tuned}, 64: {"ndcg@10": 0.1}}}
    if current is not None:
        out["current"] = {"384": {"ndcg@10": current}}
    return out


def test_first_model_must_beat_the_base_model():
    assert decide(None, results(0.6)).promoted
    kept = decide(None, results(0.4))
    assert not kept.promoted and kept.reason == "tuned NDCG@10 0.4000 < base 0.5000: base model kept"


def test_better_or_equal_is_promoted_worse_is_not():
    current = {"model_sha": "old"}
    assert decide(current, results(0.62, 0.61)).promoted
    assert decide(current, results(0.61, 0.61)).promoted
    kept = decide(current, results(0.60, 0.61))
    assert not kept.promoted and "current model kept" in kept.reason
    assert kept.tuned_ndcg == 0.60 and kept.current_ndcg == 0.61


def test_the_reason_states_the_interval_and_whether_the_gain_is_real():
    noisy = {"tuned-base": {384: {"ndcg@10": {"delta": 0.1, "low": -0.02, "high": 0.2, "verdict": "within noise"}}}}
    promoted = decide(None, results(0.6), noisy)
    assert promoted.promoted
    assert (
        promoted.reason
        == "tuned NDCG@10 0.6000 >= base 0.5000 (Δ +0.1000, 95% CI [-0.0200, +0.2000]: within noise): promoted"
    )


def test_no_eval_split_keeps_the_current_model():
    assert not decide({"model_sha": "old"}, None).promoted


def test_pointer_round_trip(store):
    assert read_current(store, "docs") is None
    write_current(store, "docs", {"model_dir": "m", "model_sha": "abc"})
    assert read_current(store, "docs")["model_sha"] == "abc"
    assert read_current(store, "other") is None


def test_no_new_documents_is_known_whether_or_not_the_last_run_was_promoted(store):
    from domain_embed.tasks.publishing.promote import corpus_changed, record_run

    assert corpus_changed(store, "docs", "sha-1")
    record_run(store, "docs", "sha-1")
    assert not corpus_changed(store, "docs", "sha-1")
    assert corpus_changed(store, "docs", "sha-2")
