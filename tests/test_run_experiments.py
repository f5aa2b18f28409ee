"""The experiment runner (run_experiments.py): a tiny grid (2 seeds x 2 conditions, plus a condition
whose runs fail) through a local Ray instance writes the runs, the figure and the tables, reports the
failed runs with their logs without stopping the others, leaves no process behind (none carrying the
test's environment tag), and a second call with --resume skips the finished runs; the helpers behind
the figure; bad flags and folders."""

import contextlib
import csv
import glob
import io
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import run_experiments as rx
from rlhf import agent as agent_lib
from rlhf import reward_model as rm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "run_experiments.py")
# one env, so that episodes (2000 steps) end at steps 2000 and 4000 of a 4096-step run
TINY = ["--total-timesteps", "4096", "--num-envs", "1", "--num-steps", "512", "--eval-episodes", "2"]


# every process this test starts (Ray's daemons and workers, the runs) inherits this tag in its environment
TAG = f"MOVING_DOT_TEST_RUN={os.getpid()}_{time.time_ns()}"


def tagged_processes():
    """Live processes carrying this test's environment tag (pid -> command name): ours and their descendants
    only, whatever session or parent they end up with (a daemon may move to a session of its own)."""
    found, tag = {}, TAG.encode() + b"\0"
    for proc in glob.glob("/proc/[0-9]*"):
        try:
            with open(f"{proc}/environ", "rb") as f:
                environ = f.read()
            with open(f"{proc}/stat") as f:
                stat = f.read()
        except OSError:  # gone, or another user's
            continue
        if int(proc.split("/")[2]) != os.getpid() and tag in environ and stat[stat.rindex(")") + 2] != "Z":
            found[int(proc.split("/")[2])] = stat[stat.index("(") + 1:stat.rindex(")")]
    return found


def call(argv):
    """run_experiments.main with its printout captured."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        summary = rx.main(rx.parse_args(argv))
    return summary, out.getvalue()


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    rm.save(rm.RewardModel("normalized", ensemble_size=1), str(tmp / "reward_model.pt"), {"untrained": True})
    (tmp / "broken.pt").write_text("not a reward model\n")
    argv = ["--seeds", "1", "2", "--reward-model", str(tmp / "reward_model.pt"), "--experiment-dir", str(tmp / "exp"),
            "--conditions", "env", "rlhf", f"broken=--rlhf --reward-model {tmp / 'broken.pt'}", "--jobs", "2", *TINY]
    name, value = TAG.split("=")
    os.environ[name] = value  # read by every child from here on
    try:
        summary, out = call(argv)
    finally:
        del os.environ[name]
    deadline = time.time() + 10  # Ray's processes exit a moment after ray.shutdown()
    while tagged_processes() and time.time() < deadline:
        time.sleep(0.2)
    left = tagged_processes()
    return {"tmp": tmp, "exp": tmp / "exp", "argv": argv, "summary": summary, "out": out, "left": left}


# --- a tiny grid through a local Ray instance --------------------------------------------------------

def test_grid_writes_a_folder_per_run(grid):
    exp, results = grid["exp"], grid["summary"]["results"]
    assert sorted(results) == sorted(f"{c}__seed{s}" for c in ("env", "rlhf", "broken") for s in (1, 2))
    for condition in ("env", "rlhf"):
        for seed in (1, 2):
            run_dir = exp / f"{condition}__seed{seed}"
            result = json.loads((run_dir / "result.json").read_text())
            assert result == results[f"{condition}__seed{seed}"]
            assert result["status"] == "finished" and result["returncode"] == 0 and result["wall_s"] > 0
            assert result["argv"][:2] == ["--seed", str(seed)] and ("--rlhf" in result["argv"]) == (condition == "rlhf")
            assert glob.glob(str(run_dir / "events.out.tfevents.*"))
            _, checkpoint = agent_lib.load(str(run_dir / "agent.pt"))
            assert checkpoint["args"]["seed"] == seed and checkpoint["args"]["rlhf"] == (condition == "rlhf")
            assert checkpoint["args"]["total_timesteps"] == 4096 and checkpoint["args"]["num_envs"] == 1
            assert "wrote" in (run_dir / "log.txt").read_text()  # ppo_rlhf.py's own printout
    record = json.loads((exp / "experiment.json").read_text())
    assert record["format"] == "moving-dot-experiment" and len(record["calls"]) >= 1


def test_failing_runs_are_reported_with_their_logs_and_the_others_finish(grid):
    summary, out = grid["summary"], grid["out"]
    assert summary["failed"] == ["broken__seed1", "broken__seed2"]
    for seed in (1, 2):
        run_dir = grid["exp"] / f"broken__seed{seed}"
        result = json.loads((run_dir / "result.json").read_text())
        assert result["status"] == "failed" and result["returncode"] == 1
        log = (run_dir / "log.txt").read_text()
        assert "broken.pt is not a readable reward model file" in log
        assert f"broken__seed{seed}: FAILED (exit code 1), log {run_dir / 'log.txt'}" in out
        assert not glob.glob(str(run_dir / "events.out.tfevents.*"))
    assert out.count("is not a readable reward model file") == 2  # the log's tail is in the report
    assert out.count(": finished in ") == 4


def test_grid_writes_the_figure_and_the_tables(grid):
    exp, rows = grid["exp"], grid["summary"]["rows"]
    with Image.open(exp / "returns.png") as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] > 300
    lines = (exp / "results.md").read_text().splitlines()
    assert "greedy normalized return (final eval)" in lines[0]
    table = [line.split(" | ") for line in lines[2:5]]
    assert [cells[0] for cells in table] == ["| env", "| rlhf", "| broken"]
    assert [cells[1] for cells in table] == ["2/2", "2/2", "0/2"]
    assert table[2][2] == "-"
    with open(exp / "results.csv") as f:
        written = list(csv.DictReader(f))
    assert [row["condition"] for row in written] == ["env", "rlhf", "broken"]
    assert [int(row["runs_finished"]) for row in written] == [2, 2, 0]
    assert written[2]["greedy_normalized_return_mean"] == ""
    # the normalized return columns are the agents' final fixed-start evaluation
    for i, condition in enumerate(("env", "rlhf")):
        greedy = [agent_lib.load(str(exp / f"{condition}__seed{s}" / "agent.pt"))[1]["summary"]["greedy"]["normalized_return"]
                  for s in (1, 2)]
        assert rows[i]["greedy_normalized_return_mean"] == pytest.approx(np.mean(greedy))
        assert rows[i]["greedy_normalized_return_std"] == pytest.approx(np.std(greedy))
        assert float(written[i]["greedy_normalized_return_mean"]) == pytest.approx(np.mean(greedy))
        assert f"{np.mean(greedy):.3f} ± {np.std(greedy):.3f}" in lines[2 + i]
        assert rows[i]["sps_mean"] > 0 and rows[i]["wall_s_mean"] > 0


def test_no_process_is_left_behind(grid):
    assert grid["left"] == {}


def test_resume_skips_finished_runs_and_runs_the_failed_ones_again(grid):
    exp = grid["exp"]
    finished = {path: os.stat(path).st_mtime_ns for path in glob.glob(str(exp / "*__seed*" / "*")) if "broken" not in path}
    # without --resume the folder is refused
    with pytest.raises(rx.ExperimentError, match="already exists; pass --resume"):
        call(grid["argv"])
    # all finished: no Ray, no run, the tables again (only the conditions asked for)
    summary, out = call([*grid["argv"][:grid["argv"].index("--conditions") + 3], "--jobs", "2", *TINY, "--resume"])
    assert "4 finished already, 0 to run" in out and summary["failed"] == []
    assert [row["condition"] for row in summary["rows"]] == ["env", "rlhf"]
    # all conditions, seed 1: only the failed run runs
    summary, out = call(["--seeds", "1", *grid["argv"][3:], "--resume"])
    assert "3 runs (3 conditions x 1 seeds): 2 finished already, 1 to run" in out
    assert out.count(": finished in ") == 0 and out.count("broken__seed1: FAILED") == 1
    assert summary["failed"] == ["broken__seed1"]
    assert {path: os.stat(path).st_mtime_ns for path in finished} == finished
    assert len(json.loads((exp / "experiment.json").read_text())["calls"]) == 3


def test_resume_with_other_flags_is_refused(grid):
    argv = [*grid["argv"], "--resume"]
    argv[argv.index("4096")] = "8192"
    with pytest.raises(rx.ExperimentError, match="was run with other flags"):
        call(argv)


# --- the figure's curves ------------------------------------------------------------------------------

def test_rolling_mean():
    np.testing.assert_allclose(rx.rolling_mean(np.array([1.0, 2, 3, 4, 10]), 2), [1, 1.5, 2.5, 3.5, 7])
    np.testing.assert_allclose(rx.rolling_mean(np.array([4.0, 2, 0]), 10), [4, 3, 2])


def test_rolling_curve_gives_one_point_per_step():
    class Event:
        def __init__(self, step, value):
            self.step, self.value = step, value

    # 2 envs: their episodes end together
    events = [Event(2000, 0.0), Event(2000, 2.0), Event(4000, 4.0), Event(4000, 6.0)]
    steps, values = rx.rolling_curve(events, window=3)
    np.testing.assert_array_equal(steps, [2000, 4000])
    np.testing.assert_allclose(values, [1.0, 4.0])


def test_seed_band_covers_the_common_steps():
    curves = [(np.array([0, 10, 20, 30]), np.array([0.0, 1, 2, 3])), (np.array([5, 15, 25]), np.array([1.0, 1, 1]))]
    steps, mean, std = rx.seed_band(curves)
    np.testing.assert_array_equal(steps, [5, 10, 15, 20, 25])
    np.testing.assert_allclose(mean, [0.75, 1, 1.25, 1.5, 1.75])
    np.testing.assert_allclose(std, [0.25, 0, 0.25, 0.5, 0.75])


# --- bad flags, bad folders ---------------------------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--conditions", "env", "fancy"], "unknown condition 'fancy'"),
    (["--conditions", "env", "env"], "given twice"),
    (["--conditions", "a/b=--rlhf"], "condition name 'a/b'"),
    (["--conditions", "rlhf", "--reward-model", "nope.pt"], "reward model nope.pt (condition rlhf) not found"),
    (["--conditions", "x=--rlhf --reward-model nope.pt"], "reward model nope.pt (condition x) not found"),
    (["--conditions", "x=--seed 3"], "--seed is set by the runner"),
    (["--conditions", "env", "--seed", "3"], "--seed is set by the runner for each run; use --seeds"),
    (["--conditions", "env", "--save-path", "a.pt"], "--save-path is set by the runner"),
    (["--conditions", "env", "--seeds", "1", "1"], "--seeds has repeats"),
    (["--conditions", "env", "--jobs", "0"], "--jobs"),
    (["--conditions", "env", "--jobs", "1", "--cpus-per-run", "2"], "more than the local instance has"),
    (["--conditions", "env", "--resume", "--overwrite"], "exclude each other"),
])
def test_bad_flags_exit_with_code_2(flags, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        rx.parse_args(flags)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_flags_not_known_to_the_runner_go_to_every_run_and_conditions_win(tmp_path):
    model = tmp_path / "m.pt"
    model.write_bytes(b"shipped as is")
    args = rx.parse_args(["--seeds", "3", "--reward-model", str(model), "--preset", "fast", "--ent-coef", "-0",
                          "--conditions", "env", "rlhf", "lr=--learning-rate 1e-3", "--", "--learning-rate", "5e-4"])
    assert args.ppo_flags == ["--preset", "fast", "--ent-coef", "-0", "--learning-rate", "5e-4"]
    assert args.condition_flags == {"env": [], "rlhf": ["--rlhf"], "lr": ["--learning-rate", "1e-3"]}
    assert args.reward_models == {"rlhf": str(model)}
    assert args.plot == os.path.join("runs", "experiment", "returns.png") and args.csv.endswith("results.csv")


def test_a_reward_model_per_seed_is_checked_for_every_seed(tmp_path, capsys, monkeypatch):
    """{seed} in --reward-model: one model per seed, each of which must exist before any run starts."""
    monkeypatch.chdir(tmp_path)
    for seed in (1, 2):
        (tmp_path / f"rm_{seed}.pt").write_bytes(b"shipped as is")
    pattern = str(tmp_path / "rm_{seed}.pt")
    args = rx.parse_args(["--seeds", "1", "2", "--reward-model", pattern, "--conditions", "env", "rlhf"])
    assert args.reward_models == {"rlhf": pattern}
    assert [rx.seed_path(pattern, seed) for seed in (1, 2)] == [str(tmp_path / "rm_1.pt"), str(tmp_path / "rm_2.pt")]
    assert rx.seed_path(str(tmp_path / "one.pt"), 3) == str(tmp_path / "one.pt")  # no {seed}: the same file for every seed
    with pytest.raises(SystemExit) as e:
        rx.parse_args(["--seeds", "1", "2", "3", "--reward-model", pattern, "--conditions", "rlhf"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"reward model {tmp_path / 'rm_3.pt'} (condition rlhf) not found" in err and "--seed 3" in err


def test_a_folder_not_made_by_the_runner_is_never_deleted(tmp_path):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "precious.txt").write_text("keep me")
    for flag in ("--overwrite", "--resume"):
        with pytest.raises(rx.ExperimentError, match="not made by run_experiments.py"):
            rx.main(rx.parse_args(["--conditions", "env", "--experiment-dir", str(tmp_path / "exp"), flag]))
    assert os.listdir(tmp_path / "exp") == ["precious.txt"]


def test_cli_existing_folder_exits_with_a_one_line_error(tmp_path):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "experiment.json").write_text("{}")
    result = subprocess.run([sys.executable, SCRIPT, "--conditions", "env", "--experiment-dir", "exp"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run_experiments.py: error: exp already exists; pass --resume")
