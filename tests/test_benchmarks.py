"""The benchmarks on tiny sizes: reward_accuracy.py (each point is a real generate-and-train run whose
figures reach the tables, and the least-squares reference fit learns the true reward's order),
robustness.py (a whole pipeline per seed), versus_writeup.py and writeup_reference.py (the
write-up's side), reward_recipes.py and before_after.py."""

import json
import os
import sys

import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import reward_accuracy as ra


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("reward_accuracy")
    ra.main(ra.parse_args(["--sizes", "200", "600", "--seeds", "1", "--fresh", "2000", "--ceiling-steps", "500",
                           "--ceiling-every", "250", "--out-dir", str(out)]))
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
    assert [c["steps"] for c in record["ceiling"]] == [250, 500]
    first, last = record["ceiling"]
    assert last["rmse"] < first["rmse"]  # fitting minus the distance, which spans [-127, 0]
    assert last["fresh_accuracy"] > 0.93  # measured 0.975 (RMSE 8.1 -> 1.0)


def test_table_and_figure_are_written(tiny):
    record, out = tiny
    report = (out / "results.md").read_text()
    assert f"| 600 | {record['rows'][1]['val_accuracy_mean']:.4f} ± 0.0000" in report
    assert "at no size measured" in report or "from 200 comparisons" in report or "from 600 comparisons" in report
    assert f"| 500 | {record['ceiling'][1]['fresh_accuracy']:.4f} |" in report
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


# --- experiments/robustness.py ----------------------------------------------------------------------

import robustness
from rlhf import reward_model as rm


@pytest.fixture(scope="module")
def robust(tmp_path_factory):
    """Two whole pipelines (seeds 1 and 2) on tiny sizes, the fast route only."""
    out = tmp_path_factory.mktemp("robustness")
    results = robustness.main(robustness.parse_args([
        "--seeds", "1", "2", "--quick", "--out-dir", str(out), "--generator-flags=--n-segments 400 --n-comparisons 400",
        "--trainer-flags=--max-steps 200 --eval-every 100 --no-plot", "--ppo-flags=--total-timesteps 1024 --eval-episodes 8"]))
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
        assert result["reward"]["normalize_margin"] == pytest.approx(model.summary["action_margin"])  # the trainer's own figure
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


# --- benchmarks/versus_writeup.py and benchmarks/writeup_reference.py ------------------------------

import contextlib
import io
import sqlite3
import subprocess
from datetime import datetime, timedelta

import numpy as np
import torch
import versus_writeup
import writeup_reference as wr
from gymnasium.utils.env_checker import check_env
from torch.utils.tensorboard import SummaryWriter

from rlhf import moving_dot as md

TINY_VERSUS = ["--reference-mode", "--n-comparisons", "300", "--reference-reward-steps", "20", "--reference-total-timesteps", "512", "--total-timesteps", "1024",
               "--reward-max-steps", "20", "--fast-total-timesteps", "1024", "--eval-episodes", "2"]


@pytest.fixture(scope="module")
def versus(tmp_path_factory):
    """Both pipelines on tiny sizes, one round. One torch thread in every stage: a test checks
    behaviour, and the reference's default threads crawl on a busy machine."""
    out = tmp_path_factory.mktemp("versus") / "versus.json"
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.setenv("OMP_NUM_THREADS", "1")
        returned = versus_writeup.main(versus_writeup.parse_args([*TINY_VERSUS, "--out", str(out)]))
    with open(out) as f:
        return json.load(f), returned, printed.getvalue()


def test_versus_has_every_row_and_each_ratio_is_reference_wall_over_ours(versus):
    record, returned, _ = versus
    assert [row["row"] for row in record["rows"]] == ["reward stage", "PPO --rlhf (the write-up's workload)", "nothing -> trained agent"]
    for row in record["rows"]:
        for side in ("ours", "reference"):
            assert row[side]["wall_s"] > 0 and row[side]["cpu_s"] > 0 and row[side]["peak_mb"] > 50
        assert row["ratio_wall"] == pytest.approx(row["reference"]["wall_s"] / row["ours"]["wall_s"])
    # the pipeline rows are the stage processes one after the other: ours as `make run` runs them
    ours, reference = record["stages"]["ours"], record["stages"]["reference"]
    pipeline = record["rows"][2]
    assert pipeline["ours"]["wall_s"] == pytest.approx(sum(ours[s]["wall_s"] for s in ("generate", "reward", "fast")))
    assert pipeline["reference"]["wall_s"] == pytest.approx(sum(reference[s]["wall_s"] for s in ("generate", "reward", "ppo")))
    assert pipeline["ours"]["greedy"] == ours["fast"]["greedy"] and -1 <= pipeline["ours"]["sampled"] <= 1
    assert ours["ppo"]["steps"] == 1024 and ours["fast"]["steps"] == 1024  # the shrinking flags reached our stages
    assert record["shrunk"] and set(record["machine"]) == {"platform", "python", "cpus", "processor"}
    assert record["rows"] == json.loads(json.dumps(returned["rows"]))


def test_versus_marks_and_scales_the_shortened_reference_runs(versus):
    record, _, printed = versus
    reward_row, ppo_row, pipeline = record["rows"]
    assert reward_row["extrapolated"] and ppo_row["extrapolated"] and pipeline["extrapolated"]
    reference = record["stages"]["reference"]
    assert not reference["generate"]["extrapolated"]  # 300 comparisons asked, 300 made
    for stage, target in (("reward", 100_000), ("ppo", 1024)):
        r = reference[stage]
        assert r["factor"] == pytest.approx(target / r["steps"])
        assert r["wall_s"] == pytest.approx(r["measured_wall_s"] + (r["factor"] - 1) * r["loop_wall_s"])
        assert 0 < r["loop_wall_s"] < r["measured_wall_s"]  # start-up is not scaled
    assert reference["reward"]["steps"] == 20 and reference["ppo"]["steps"] == 512
    # the printed table: what the write-up's side is, every scaled row said to be, the shrinking flags named
    assert "reference-mode reproduction" in printed and "not its code" in printed
    assert "versus_writeup: the reference mode (benchmarks/writeup_reference.py), not the write-up's code: --reference-mode was given." in printed
    assert record["writeup_side"]["mode"] == "reference" and record["writeup_side"]["fallback_reason"] == "--reference-mode was given"
    for row in record["rows"]:
        line = next(line for line in printed.splitlines() if line.startswith(row["row"]))
        assert line.endswith("extrapolated") and f"{row['ratio_wall']:.1f}x" in line
    assert "SHRUNK for a test (--total-timesteps" in printed


def test_versus_defaults_are_the_full_workloads_and_extrapolate_only_shortened_runs():
    args = versus_writeup.parse_args([])
    assert (args.reference_reward_steps, args.reference_total_timesteps, args.shrunk) == (100_000, 1_000_000, [])
    quick = versus_writeup.parse_args(["--quick"])
    assert (quick.reference_reward_steps, quick.reference_total_timesteps, quick.total_timesteps) == (10_000, 100_000, 1_000_000)
    full = {"wall_s": 10.0, "cpu_s": 12.0, "peak_mb": 300.0, "steps": 1000, "loop_wall_s": 8.0, "loop_cpu_s": 9.0}
    assert versus_writeup.extrapolate(full, 1000) == {**full, "extrapolated": False, "factor": 1.0}
    assert versus_writeup.extrapolate(full, 10_000)["wall_s"] == pytest.approx(10.0 + 9 * 8.0)


# the write-up's code: its pieces, without the network or the scratch environment's pip installs

def git_repo(path, files):
    """A one-commit git repository of `files` (name -> text); returns the commit."""
    path.mkdir()
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "c"], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


def test_writeup_side_falls_back_to_the_reference_mode_with_the_reason(tmp_path):
    missing = tmp_path / "no-such-repo"
    args = versus_writeup.parse_args(["--scratch-dir", str(tmp_path / "scratch"), "--writeup-repo", str(missing)])
    side, why = versus_writeup.writeup_side(args)
    assert side["mode"] == "reference" and side["commands"][0][1][0] == versus_writeup.REFERENCE
    assert why.startswith(f"fetching e1bd48e from {missing} failed: ") and "\n" not in why
    assert not (tmp_path / "scratch" / "manifest.json").exists()  # nothing half-built is taken for a build


def test_writeup_code_is_fetched_at_its_commit_from_a_local_repository(tmp_path):
    commit = git_repo(tmp_path / "repo", {"moving_dot/train.py": "print(1)\n", "README.md": "r\n"})
    versus_writeup.fetch_commit(str(tmp_path / "repo"), commit, str(tmp_path / "out"))
    assert (tmp_path / "out" / "moving_dot" / "train.py").read_text() == "print(1)\n" and not (tmp_path / "out" / ".git").exists()
    with pytest.raises(versus_writeup.ScratchError, match="fetching 0000000 from"):
        versus_writeup.fetch_commit(str(tmp_path / "repo"), "0" * 40, str(tmp_path / "out2"))


def test_a_cached_scratch_environment_is_reused_only_while_its_spec_matches(tmp_path):
    scratch = tmp_path / "scratch"
    (scratch / "venv" / "bin").mkdir(parents=True)
    (scratch / "venv" / "bin" / "python").write_text("")
    manifest = {"spec": versus_writeup.scratch_spec(), "freeze": ["torch==2.13.0"], "build_s": 70.0}
    (scratch / "manifest.json").write_text(json.dumps(manifest))
    args = versus_writeup.parse_args(["--scratch-dir", str(scratch), "--writeup-repo", str(tmp_path / "none")])
    assert versus_writeup.build_scratch(args) == {**manifest, "cached": True}
    # another spec (here: other packages) rebuilds: the old environment goes, and the missing repo stops the build
    (scratch / "manifest.json").write_text(json.dumps({**manifest, "spec": {**manifest["spec"], "packages": ["torch==0"]}}))
    with pytest.raises(versus_writeup.ScratchError, match="fetching"):
        versus_writeup.build_scratch(args)
    assert not (scratch / "venv").exists() and not (scratch / "manifest.json").exists()


def test_the_shim_patches_the_pinned_text_once_or_refuses(tmp_path):
    package = tmp_path / "gym-moving-dot"
    files = {"gym_moving_dot/__init__.py": "from gym.envs.registration import register\n\nregister(\n    id='MovingDotDiscreteNoFrameskip-v0',\n"
             "    entry_point='gym_moving_dot.envs.moving_dot_env:MovingDotDiscreteEnv'\n)\n",
             "gym_moving_dot/envs/moving_dot_env.py": "import gym\nfrom gym import spaces\nfrom gym.utils import seeding\nimport numpy as np\n"}
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    versus_writeup.apply_shim(str(package))
    init = (package / "gym_moving_dot" / "__init__.py").read_text()
    assert "from gymnasium.envs.registration import register" in init and "envs.position_env:MovingDotPositionEnv" in init
    assert (package / "gym_moving_dot" / "envs" / "moving_dot_env.py").read_text().startswith("import gymnasium as gym\nfrom gymnasium import spaces")
    assert "class MovingDotPositionEnv(MovingDotDiscreteEnv)" in (package / "gym_moving_dot" / "envs" / "position_env.py").read_text()
    compile(versus_writeup.SHIM, "position_env.py", "exec")
    with pytest.raises(versus_writeup.ScratchError, match="found 0 times, not once: not the pinned code"):
        versus_writeup.apply_shim(str(package))  # already patched: not the pinned text


def test_writeup_stage_commands_and_the_patches_of_a_shortened_run(tmp_path):
    code = tmp_path / "scratch" / "writeup" / "moving_dot"
    code.mkdir(parents=True)
    (code / "learn_reward.py").write_text("if True:\n" + versus_writeup.REWARD_LOOP + "        pass\n")
    (code / "make_preferences_db.py").write_text("def make_db():\n\tn_segments = 10000\n\tn_comparisons = 10000\n")
    args = versus_writeup.parse_args(["--quick", "--reference-total-timesteps", "51200", "--seed", "3"])
    assert versus_writeup.writeup_commands(args) == [
        ("generate", ["-c", "from make_preferences_db import make_db; make_db('preferences.db')"]), ("reward", ["learn_reward.py"]),
        ("ppo", ["train.py", "--seed", "3", "--rlhf", "--total-timesteps", "51200"])]
    workdir = tmp_path / "round"
    workdir.mkdir()
    assert versus_writeup.writeup_code(str(tmp_path / "scratch"), str(workdir), args) == ["learn_reward.py: range(100000) -> range(10000)"]
    assert "    for epoch in range(10000):\n" in (workdir / "learn_reward.py").read_text()
    assert "range(100000)" in (code / "learn_reward.py").read_text()  # the cached code is never patched
    full = tmp_path / "round2"
    full.mkdir()
    shrunk = versus_writeup.parse_args(["--reference-reward-steps", "100000", "--n-comparisons", "300"])
    assert versus_writeup.writeup_code(str(tmp_path / "scratch"), str(full), shrunk) == [
        "make_preferences_db.py: n_segments = 10000 -> 300", "make_preferences_db.py: n_comparisons = 10000 -> 300"]
    assert "range(100000)" in (full / "learn_reward.py").read_text() and "\tn_comparisons = 300\n" in (full / "make_preferences_db.py").read_text()
    with pytest.raises(SystemExit):  # the code is timed from its logs, which a tiny run does not have
        versus_writeup.parse_args(["--reference-reward-steps", "200"])
    with pytest.raises(SystemExit):
        versus_writeup.parse_args(["--validate", "--reference-mode"])


def test_writeup_stages_are_timed_from_their_own_logs_and_extrapolated(tmp_path):
    # learn_reward.py's log_blue line every 100 steps: 3 ms a step, the checkpoint at 0 adds 5 s
    start = datetime(2026, 1, 1, 12, 0, 0)
    stamps = {0: 0.0, 100: 5.3, 200: 5.6, 300: 5.9, 400: 6.2}
    output = "".join(f"{start + timedelta(seconds=t)}\x1b[94m INFO: {epoch} 88.1\x1b[0m\n" for epoch, t in stamps.items())
    reward = versus_writeup.writeup_reward_timing(output, 500)
    assert reward["per_step_wall_s"] == pytest.approx(0.003) and reward["check_wall_s"] == pytest.approx(5.0)
    scaled = versus_writeup.extrapolate_writeup({**reward, "wall_s": 20.0, "cpu_s": 30.0, "peak_mb": 300.0}, 100_000)
    assert scaled["missing_checks"] == 3  # the checkpoints at 1000, 10000 and 25000; the one at 100000 is never reached
    assert scaled["wall_s"] == pytest.approx(20.0 + 99_500 * 0.003 + 3 * 5.0) and scaled["cpu_s"] == pytest.approx(scaled["wall_s"] * 1.5)
    assert scaled["extrapolated"] and scaled["measured_wall_s"] == 20.0
    # train.py's charts/SPS, once an update: 1.5 s an update after the first
    run = tmp_path / "runs" / "MovingDot__train__1__0"
    writer = SummaryWriter(str(run))
    for update, wall_time in enumerate((100.0, 101.0, 103.0), 1):
        writer.add_scalar("losses/value_loss", 1.0, update * 512, walltime=wall_time - 0.5)
        writer.add_scalar("charts/SPS", 1000, update * 512, walltime=wall_time)
    writer.close()
    ppo = versus_writeup.writeup_ppo_timing(str(tmp_path), 1536)
    assert ppo == {"steps": 1536, "per_step_wall_s": pytest.approx(1.5 / 512)}
    assert versus_writeup.extrapolate_writeup({**ppo, "wall_s": 9.0, "cpu_s": 9.0, "peak_mb": 1.0}, 1536)["extrapolated"] is False
    assert versus_writeup.extrapolate_writeup({**ppo, "wall_s": 9.0, "cpu_s": 9.0, "peak_mb": 1.0}, 15360)["wall_s"] == pytest.approx(9.0 + 27 * 1.5)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_reference_generator_labels_follow_the_distance_heuristic(tmp_path):
    path = tmp_path / "preferences.db"
    wr.main(wr.parse_args(["generate", "--seed", "3", "--db", str(path), "--n-segments", "200", "--n-comparisons", "300"]))
    rows = sqlite3.connect(path).execute("SELECT * FROM preferences").fetchall()
    assert len(rows) == 300 and all(len(row) == 9 for row in rows) and [row[0] for row in rows] == list(range(300))
    labels = set()
    for _, x1, y1, a1, x2, y2, a2, mu1, mu2 in rows:
        for x, y, a in ((x1, y1, a1), (x2, y2, a2)):
            assert md.X_MIN <= x <= md.X_MAX and md.Y_MIN <= y <= md.Y_MAX and 0 <= a < md.N_ACTIONS
        # closed distance, computed here from moving_dot's geometry
        move1, move2 = (np.linalg.norm(np.array(p) - md.CENTRE) - np.linalg.norm(np.array(p) + md.ACTION_DELTAS[a] - md.CENTRE)
                        for p, a in (((x1, y1), a1), ((x2, y2), a2)))
        assert (mu1, mu2) == ((1.0, 0.0) if move1 > move2 else (0.0, 1.0) if move2 > move1 else (0.5, 0.5))
        labels.add((mu1, mu2))
    assert labels == {(1.0, 0.0), (0.0, 1.0), (0.5, 0.5)}
    with pytest.raises(SystemExit):  # an existing DB is never appended to
        wr.main(wr.parse_args(["generate", "--db", str(path)]))


def test_reference_reward_stage_loss_goes_down(tmp_path, one_thread):
    db_path, model_path = tmp_path / "preferences.db", tmp_path / "rewards_model"
    wr.main(wr.parse_args(["generate", "--seed", "1", "--db", str(db_path), "--n-segments", "1000", "--n-comparisons", "1000"]))
    losses = wr.main(wr.parse_args(["reward", "--seed", "1", "--db", str(db_path), "--out", str(model_path), "--steps", "400"]))
    # from about chance (128 ln 2 = 88.7 a batch); the write-up's lr 2.5e-4 needs its 100,000 steps to get far
    assert len(losses) == 400 and np.mean(losses[-50:]) < min(0.95 * np.mean(losses[:50]), 128 * np.log(2) - 2)
    network = wr.mlp(3, 1, 1.0)
    network.load_state_dict(torch.load(model_path, weights_only=True))  # the write-up's file: a bare state_dict


def test_reference_env_has_moving_dots_geometry():
    env = wr.MovingDotEnv()
    check_env(env, skip_render_check=True)
    rng = np.random.default_rng(0)
    for state, action in zip(rng.integers(md.N_STATES, size=300), rng.integers(md.N_ACTIONS, size=300)):
        env.position = md.POSITIONS[state].copy()
        obs, reward, terminated, truncated, _ = env.step(action)
        assert (obs == md.OBS_TABLE[md.NEXT_STATE[state, action]]).all() and reward == md.TRUE_REWARD[state, action]
        assert not terminated and not truncated
    for x, y in ((md.X_MIN, md.Y_MIN), (md.X_MAX, md.Y_MAX)):  # the walls
        for action in range(md.N_ACTIONS):
            env.position = np.array([x, y])
            env.step(action)
            assert md.X_MIN <= env.position[0] <= md.X_MAX and md.Y_MIN <= env.position[1] <= md.Y_MAX


# --- benchmarks/reward_recipes.py and benchmarks/before_after.py ----------------------------------

def test_reward_recipes_trains_each_recipe_on_each_seed_and_reports_what_the_trainer_did(tmp_path, capsys):
    import reward_recipes
    out = tmp_path / "recipes.json"
    results = reward_recipes.main(reward_recipes.parse_args(
        ["--seeds", "1", "2", "--recipe", "short=--max-steps 30", "--recipe", "longer=--max-steps 60 --batch-size 64",
         "--out", str(out)]))
    assert list(results) == ["short", "longer"]
    assert [r["seed"] for r in results["short"]] == [1, 2]
    assert [r["steps"] for r in results["short"]] == [30, 30] and [r["steps"] for r in results["longer"]] == [60, 60]
    for rows in results.values():
        for r in rows:
            assert 0.5 < r["val_accuracy"] <= 1 and 0 <= r["worst_optimal_policy"] <= 1 and r["train_seconds"] > 0
    printed = capsys.readouterr().out
    assert "short" in printed and "longer" in printed
    with open(out) as f:
        assert json.load(f)["recipes"] == {"short": "--max-steps 30", "longer": "--max-steps 60 --batch-size 64"}


def test_reward_recipes_refuses_a_recipe_without_a_name(capsys):
    import reward_recipes
    with pytest.raises(SystemExit) as e:
        reward_recipes.parse_args(["--recipe", "--max-steps 30"])
    assert e.value.code == 2 and "NAME=FLAGS" in capsys.readouterr().err


def test_before_after_checks_out_a_commit_and_refuses_a_bad_one(tmp_path):
    import before_after
    before_after.checkout("HEAD", str(tmp_path))
    for name in ("make_preferences_db.py", "train_reward_model.py", "ppo_rlhf.py", "rlhf/reward_model.py"):
        assert (tmp_path / name).is_file()
    with pytest.raises(SystemExit) as e:
        before_after.checkout("no-such-revision-xyz", str(tmp_path / "bad"))
    assert "no-such-revision-xyz" in str(e.value) and "revision" in str(e.value)


# experiments/other_envs.py: which flags reach which stage (the runs themselves are the benchmark's, minutes a seed)
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import other_envs


@pytest.mark.parametrize("flags, message", [
    (["--env-ids", "MountainCar-v0", "--generator-flags", "--n-segments 10"], "--generator-flags goes with --method pipeline only"),
    (["--env-ids", "MountainCar-v0", "--ppo-flags", "--ent-coef 0.1"], "--ppo-flags goes with --method pipeline only"),
    (["--env-ids", "Acrobot-v1", "--loop-flags", "--rounds 1"], "--loop-flags goes with --method loop only"),
    (["--env-ids", "MountainCar-v0", "Acrobot-v1", "--loop-flags", "--rounds 1"], "would run loop and pipeline"),
    (["--env-ids", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
])
def test_other_envs_refuses_flags_a_route_would_ignore(flags, message, capsys):
    with pytest.raises(SystemExit) as e:
        other_envs.parse_args(flags)
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("method, flag, value, stage", [
    ("loop", "--loop-flags", "--after-end-share 0.1", "loop"),
    ("pipeline", "--generator-flags", "--n-segments 30", "generator"),
    ("pipeline", "--trainer-flags", "--max-steps 10", "trainer"),
])
def test_other_envs_passes_extra_flags_to_their_stage_only(tmp_path, monkeypatch, method, flag, value, stage):
    commands = []
    monkeypatch.setattr(other_envs.timing, "run_stage", lambda argv, cwd, label: commands.append(argv) or {"wall_s": 0.0})
    monkeypatch.setattr(other_envs, "collect", lambda *a: None)
    args = other_envs.parse_args(["--env-ids", "CartPole-v1", "--method", method, flag, value])
    other_envs.run_pipeline("CartPole-v1", 3, str(tmp_path), args, method)
    names = ["loop", "ppo_env"] if method == "loop" else ["generator", "trainer", "ppo_rlhf", "ppo_env"]
    assert [os.path.basename(commands[i][0]) for i in range(len(names))] == [
        {"loop": "rlhf_loop.py", "generator": "make_preferences_db.py", "trainer": "train_reward_model.py"}.get(n, "ppo_rlhf.py") for n in names]
    for i, name in enumerate(names):
        argv = " ".join(map(str, commands[i]))
        assert "--seed 3" in argv and "--env-id CartPole-v1" in argv
        assert (value in argv) == (name == stage), (name, argv)
        assert "--rounds" not in argv  # the loop's own default for the env (envs.DEFAULTS), unless --rounds is given


def test_other_envs_passes_rounds_only_when_given(tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(other_envs.timing, "run_stage", lambda argv, cwd, label: commands.append(argv) or {"wall_s": 0.0})
    monkeypatch.setattr(other_envs, "collect", lambda *a: None)
    other_envs.run_pipeline("Hopper-v5", 1, str(tmp_path), other_envs.parse_args(["--env-ids", "Hopper-v5", "--rounds", "2"]), "loop")
    loop_argv = list(map(str, commands[0]))
    assert loop_argv[loop_argv.index("--rounds") + 1] == "2"
