"""Every benchmark runs: each script's --tiny mode prints its JSON line with the keys the closing notes quote (in CI),
and the training benchmarks' own checks on CPU (extended)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

TINY = {  # script -> (extra arguments, keys of its last JSON line)
    "stages.backend_parity": (["--work", "{tmp}"], {"backends", "queries", "passages", "domains"}),
    "stages.collate": ([], {"same_tensors", "cached_ms_per_batch", "stock_ms_per_batch", "distinct_texts"}),
    "stages.embed_throughput": ([], {"backends", "passages", "cores", "torch_threads"}),
    "stages.embedded_llm": ([], {"variant", "questions_per_s", "roundtrip", "kept_by_filters", "calls"}),
    "stages.evaluate_large": ([], {"passages", "passages_per_s", "ndcg@10", "peak_rss_mb", "wall_s"}),
    "faq.domains": (["--out", "{tmp}"], {"sqlite"}),
    "hostile_folder": (["--work", "{tmp}"], {"entries", "exit_code", "accounted", "unaccounted"}),
    "stages.llm_throughput": ([], {"rpm_ratio", "chunks_lost", "speedup", "client_at_2x_limit", "limits_matched"}),
    "stages.loss_parity": ([], {"ours", "seed_defaults", "heldout_difference", "noise_2se", "within_noise"}),
    "stages.mining": ([], {"ours_s", "theirs_s", "ratio_ours_over_theirs", "overlap"}),
    "stages.train_memory": ([], {"variants", "steps", "batch_size", "words"}),
    "stages.train_throughput": (
        ["--steps", "4", "--batch-size", "16"],
        {"ours", "seed_defaults", "speedup_real_tokens_per_s", "device"},
    ),
    "plan_speed": ([], {"documents", "fresh_store_s", "chunked_store_s", "chunks_estimated", "chunks_exact"}),
    "quality": (
        ["--work", "{tmp}", "--oracle", "--variant", "benchmarks/variants/no-rotate.json"],
        {"ndcg@10", "mrr@10", "recall@10", "dev", "domains", "queries", "llm_calls", "wall_s"},
    ),
    "scale": (["--work", "{tmp}"], {"documents_ratio", "seconds_ratio"}),
}
SLOW = (  # a whole pipeline run each (70, 140 and 140 s alone on 2 cores; 230-270 s started together)
    "hostile_folder",
    "quality",
    "scale",
)
CHECKS = {  # script -> what its tiny run must show beyond the keys
    "hostile_folder": lambda r: r["exit_code"] == 0 and r["unaccounted"] == [] and r["accounted"] == r["entries"],
    "quality": lambda r: r["queries"] > 0
    and set(r["domains"]) == {"git"}
    and r["llm_calls"] > 0
    and r["oracle"]["chunks_with_a_human_question"] > 0
    and "384" in r["oracle"]["ndcg@10"]
    and "384" in r["oracle"]["minus_main"]["dev"]["ndcg@10"]
    and r["variant:no-rotate"]["fields"] == {"train": {"rotate": False}}
    and "384" in r["variant:no-rotate"]["minus_main"]["test"]["ndcg@10"],
    "scale": lambda r: r["documents_ratio"] == 2.0,
    "stages.backend_parity": lambda r: r["backends"]["torch"]["unchanged"]
    and r["backends"]["torch"]["same_top10"]["384"] == 1.0
    and r["backends"]["torch"]["decisions_unchanged"]
    and r["backends"]["torch"]["same_negative"] == r["backends"]["torch"]["same_roundtrip"] == 1.0
    and 0 <= r["backends"]["onnx"]["same_negative"] <= 1
    and set(r["backends"]["onnx"]["minus_torch"]) == {"384", "256", "128", "64"},
}


def benchmark_scripts() -> set[str]:
    """The scripts of benchmarks/ and its folders that run on their own, as module names below benchmarks."""
    folder = ROOT / "benchmarks"
    scripts = (p for p in folder.rglob("*.py") if '__name__ == "__main__"' in p.read_text())
    return {".".join(p.relative_to(folder).with_suffix("").parts) for p in scripts}


def test_every_benchmark_script_has_a_tiny_run_here():
    assert benchmark_scripts() == set(TINY)


@pytest.fixture(scope="module")
def slow_runs(tmp_path_factory) -> dict[str, tuple[subprocess.Popen, Path]]:
    """The slow tiny runs, started at once, each in its own folder with its output in files; each test waits for its own."""
    runs = {script: start_tiny(script, tmp_path_factory.mktemp(script)) for script in SLOW}
    yield runs
    for run, _ in runs.values():
        run.kill()
        run.wait()


@pytest.mark.slow
@pytest.mark.parametrize("script", SLOW)
def test_a_whole_pipeline_benchmarks_tiny_mode_prints_its_keys(script, slow_runs):
    run, work = slow_runs[script]
    assert run.wait(timeout=900) == 0, (work / "stderr").read_text()[-3000:]
    check_record(script, json.loads((work / "stdout").read_text().strip().splitlines()[-1]))


@pytest.mark.parametrize("script", sorted(set(TINY) - set(SLOW)))
def test_a_benchmarks_tiny_mode_prints_its_keys(script, tmp_path):
    extra = (a.format(tmp=tmp_path) for a in TINY[script][0])
    check_record(script, run_benchmark("-m", f"benchmarks.{script}", "--tiny", *extra))


def start_tiny(script: str, work: Path) -> tuple[subprocess.Popen, Path]:
    """A benchmark's tiny run in the background, writing stdout and stderr to files in `work`."""
    extra = [a.format(tmp=work / "run") for a in TINY[script][0]]
    with open(work / "stdout", "w") as out, open(work / "stderr", "w") as err:
        command = [sys.executable, "-m", f"benchmarks.{script}", "--tiny", *extra]
        return subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, text=True), work


def check_record(script: str, record: dict) -> None:
    """The JSON line holds the keys the closing notes quote, and passes the script's own check."""
    assert TINY[script][1] <= set(record), sorted(record)
    assert CHECKS.get(script, lambda r: True)(record), record


def run_benchmark(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.extended  # a benchmark's own run: `make test-all`
def test_train_throughput_compares_our_batches_with_the_seed_defaults_on_a_tiny_model():
    record = run_benchmark("benchmarks/stages/train_throughput.py", "--tiny", "--steps", "4", "--batch-size", "16")
    ours, seed = record["ours"], record["seed_defaults"]
    assert (ours["batch_size"], seed["batch_size"], record["peak_bf16_flops"], record["device"]) == (
        16,
        32,
        None,
        "cpu",
    )
    assert ours["timed_steps"] == seed["timed_steps"] == 3
    assert ours["real_tokens_per_s"] > 0 and ours["mfu"] is None
    assert ours["padding_fraction"] < seed["padding_fraction"]


@pytest.mark.extended
def test_loss_parity_trains_both_configurations_on_the_same_rows():
    record = run_benchmark(
        "-m", "benchmarks.stages.loss_parity", "--steps", "6", "--seeds", "2", "--every", "3", "--heldout", "32"
    )
    for name in ("ours", "seed_defaults"):
        curve = record[name]["heldout_curve"]
        assert [step for step, _ in curve] == [0, 3, 6]
        assert curve[-1][1] < curve[0][1] == record["start_heldout_loss"], (name, curve)  # both learn
        assert len(record[name]["final_heldout_loss"]) == 2
    assert record["noise_2se"] is not None and isinstance(record["within_noise"], bool)


@pytest.mark.slow
@pytest.mark.extended  # a benchmark's own run: `make test-all`
def test_collate_benchmark_checks_the_cache_gives_the_stock_collators_tensors():
    record = run_benchmark("-m", "benchmarks.stages.collate", "--batch-size", "16", "--batches", "2")
    assert record["same_tensors"] is True
    assert record["distinct_texts"] == 16 * 3 * 3  # 3 batches of 16 rows, 3 random texts each


@pytest.mark.extended
def test_scale_benchmark_prints_one_line_per_size_and_the_growth(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.scale",
            "--sizes",
            "3,6",
            "--documents-per-task",
            "2",
            "--llm-sample",
            "6",
            "--work",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    ).stdout
    small, large, growth = (json.loads(line) for line in out.strip().splitlines())
    assert (small["documents"], large["documents"], small["parsed_ok"], large["parsed_ok"]) == (3, 6, 3, 6)
    assert set(small["seconds"]) == {"parse", "chunk", "corpus", "embed", "index", "generate"}
    assert (small["task_runs"], large["task_runs"]) == (
        2 + 2 + 5,
        3 + 3 + 5,
    )  # parse and chunk batches; parse report, corpus, chunk report, embed, generate
    assert small["llm_chunks_asked"] == large["llm_chunks_asked"] == 6 < small["chunks"] and large["llm_calls"] >= 6
    assert large["rerun_llm_calls"] == 0  # the re-run's questions come from the cache
    assert large["rerun_task_runs"] == large["task_runs"] and large["vectors"] == large["chunks"] > small["chunks"] > 0
    assert large["store_bytes"] > small["store_bytes"] > 0 and small["peak_rss_mb"] > 0
    assert growth["documents_ratio"] == 2.0 and set(growth["seconds_ratio"]) == set(small["seconds"])
