"""benchmarks/reward_accuracy.py on a tiny grid: each point is a real generate-and-train run whose
figures reach the tables, and the least-squares reference fit learns the true reward's order."""

import json
import os
import sys

import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import reward_accuracy as ra  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("reward_accuracy")
    ra.main(ra.parse_args(["--sizes", "200", "600", "--seeds", "1", "--fresh", "2000", "--ceiling-steps", "1000",
                           "--ceiling-every", "500", "--out-dir", str(out)]))
    with open(out / "results.json") as f:
        return json.load(f), out


def test_points_are_trainings_of_the_size_asked_and_scored_on_fresh_pairs(tiny):
    record, _ = tiny
    assert [(r["size"], r["seed"]) for r in record["runs"]] == [(200, 1), (600, 1)]
    for r in record["runs"]:
        assert 0.6 < r["val_accuracy"] <= 1 and 0.6 < r["fresh_accuracy"] <= 1 and 0.8 < r["action_order_agreement"] <= 1
        assert r["steps"] > 0 and 0 < r["train_seconds"] < r["wall_s"]
    # three times the labels order more fresh pairs right (the curve the benchmark draws)
    assert record["runs"][1]["fresh_accuracy"] > record["runs"][0]["fresh_accuracy"]
    assert [row["size"] for row in record["rows"]] == [200, 600]
    assert record["rows"][0]["fresh_accuracy_mean"] == record["runs"][0]["fresh_accuracy"]


def test_the_least_squares_reference_learns_the_order_of_the_true_reward(tiny):
    record, _ = tiny
    assert [c["steps"] for c in record["ceiling"]] == [500, 1000]
    first, last = record["ceiling"]
    assert last["rmse"] < first["rmse"]  # fitting minus the distance, which spans [-127, 0]
    assert last["fresh_accuracy"] > 0.93


def test_table_and_figure_are_written(tiny):
    record, out = tiny
    report = (out / "results.md").read_text()
    assert f"| 600 | {record['rows'][1]['val_accuracy_mean']:.4f} ± 0.0000" in report
    assert "at no size measured" in report or "from 200 comparisons" in report or "from 600 comparisons" in report
    assert f"| 1000 | {record['ceiling'][1]['fresh_accuracy']:.4f} |" in report
    with Image.open(out / "reward_accuracy.png") as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] > 300


@pytest.mark.parametrize("flags", [["--sizes", "10"], ["--jobs", "0"], ["--ceiling-steps", "-1"]])
def test_bad_flags_exit_with_code_2(flags):
    with pytest.raises(SystemExit) as exit_info:
        ra.parse_args(flags)
    assert exit_info.value.code == 2


def test_an_out_dir_that_is_a_file_is_refused_and_kept(tmp_path, capsys):
    path = tmp_path / "results"
    path.write_text("mine\n")
    with pytest.raises(SystemExit) as exit_info:
        ra.parse_args(["--out-dir", str(path)])
    assert exit_info.value.code == 2 and "is a file; pass a folder" in capsys.readouterr().err
    assert path.read_text() == "mine\n"


# --- benchmarks/robustness.py ----------------------------------------------------------------------

import robustness  # noqa: E402
import reward_model as rm  # noqa: E402


@pytest.fixture(scope="module")
def robust(tmp_path_factory):
    """Two whole pipelines (seeds 1 and 2) on tiny sizes, the fast route only."""
    out = tmp_path_factory.mktemp("robustness")
    results = robustness.main(robustness.parse_args([
        "--seeds", "1", "2", "--quick", "--out-dir", str(out), "--generator-flags=--n-segments 400 --n-comparisons 400",
        "--trainer-flags=--max-steps 200 --eval-every 100", "--ppo-flags=--total-timesteps 2048 --eval-episodes 8"]))
    return results, out


def test_robustness_runs_each_stage_on_its_seed_and_reads_the_figures_back(robust):
    results, out = robust
    assert sorted(results) == [1, 2]
    for seed, result in results.items():
        model = rm.load(str(out / f"seed_{seed}" / "reward_model.pt"))
        assert model.summary["args"]["seed"] == seed and model.summary["steps"] <= 200
        assert result["reward"]["val_accuracy"] == model.summary["val_accuracy"]
        for transform in rm.TRANSFORMS:  # regret is one minus the argmax figure; the worst tied policy is no better
            assert result["reward"][f"{transform}_regret"] == pytest.approx(1 - result["reward"][f"{transform}_argmax"])
            assert result["reward"][f"{transform}_worst"] <= result["reward"][f"{transform}_argmax"] + 1e-9
        assert list(result["ppo"]) == ["fast"] and -1 <= result["ppo"]["fast"]["greedy"] <= 1
    # other seeds, other DBs: the two models differ
    assert results[1]["reward"]["val_accuracy"] != results[2]["reward"]["val_accuracy"] or \
        results[1]["reward"]["epic_distance"] != results[2]["reward"]["epic_distance"]


def test_robustness_table_has_a_row_per_seed_and_the_worst_row(robust):
    results, out = robust
    report = (out / "robustness.md").read_text()
    assert "| 1 | " in report and "| 2 | " in report and "| **mean** |" in report and "| **worst** |" in report
    worst_row = next(line for line in report.splitlines() if line.startswith("| **worst** |"))
    worst_accuracy = float(worst_row.split("|")[2])
    assert worst_accuracy == pytest.approx(min(r["reward"]["val_accuracy"] for r in results.values()), abs=1e-4)
    with open(out / "robustness.json") as f:
        assert json.load(f)["args"]["runs"] == ["fast"]
