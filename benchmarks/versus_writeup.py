"""The write-up's pipeline and ours side by side, in one call: wall, CPU, peak memory, ratios.

    python benchmarks/versus_writeup.py            # full: ~15 minutes on 2 quiet cores, nearly all of it the write-up's side
    python benchmarks/versus_writeup.py --quick    # the write-up's reward stage at 10,000 steps, its PPO at 100,000, extrapolated
    python benchmarks/versus_writeup.py --validate --quick   # the write-up's code against the reference mode, no ours

The write-up's side is ITS CODE (github.com/daoplays/RLHF at WRITEUP_COMMIT, directory
moving_dot/), run in a scratch environment this script builds once and caches (--scratch-dir):
a venv with torch, gymnasium 0.29 and what the code imports (SCRATCH_PACKAGES), the code
fetched at its commit from --writeup-repo (a git URL or a local git directory), and
gym_moving_dot at MOVING_DOT_COMMIT from --moving-dot-repo behind a small gymnasium shim (that
commit is an old-gym env whose observation is a frame; MOVING_DOT_PATCHES says what changes).
Its stages, each run from a fresh copy of moving_dot/ in the round's folder, as its user would:
- generate: its make_db("preferences.db") (make_preferences_db.py has no main block, and its
  learn_reward.py calls make_db itself for a missing DB, so the call is a one-line `-c`);
- reward: its learn_reward.py (makes validation_preferences.db, 100,000 fixed steps, its
  checkpoint histograms; matplotlib on Agg so that their plt.show() returns);
- ppo: its train.py --seed SEED --rlhf --total-timesteps N.
If the scratch environment cannot be built or the code fetched, or with `--reference-mode`, the
write-up's side is benchmarks/writeup_reference.py instead, a REFERENCE-MODE reproduction of its
workload written from the write-up, and the output says so and why in one line.

Ours is this repo's stage scripts on their defaults. Each stage is its own process, measured
with os.wait4 as benchmarks/benchmark.py does: wall seconds, CPU seconds (user + system),
peak resident MB. Every round runs both sides, stage by stage, alternating which side goes
first (`--repeats` rounds; figures are means over rounds, peak memory the maximum).

Rows, each with the ratio write-up wall / our wall:
- the reward stage: the write-up's fixed 100,000 steps vs train_reward_model.py on its defaults
  (early stopping), each on a DB of 10,000 comparisons from its own generator;
- the write-up's own workload, PPO on the learned reward for 1,000,000 steps: its `train.py
  --rlhf` vs `ppo_rlhf.py --rlhf` (whose defaults are CleanRL's, as the write-up's were);
- nothing to a trained agent: the write-up's pipeline (generate, reward, ppo --rlhf 1M) vs ours
  as `make run` runs it (make_preferences_db.py, train_reward_model.py, ppo_rlhf.py --preset
  fast --rlhf), our agent's greedy and sampled normalized return read from its agent file.

A shortened write-up run (`--quick`, `--reference-reward-steps`, `--reference-total-timesteps`) is
scaled to the full workload and marked "extrapolated"; its start-up (imports, loading, set-up)
is not scaled. Its code: learn_reward.py's `range(100000)` is patched to the steps asked (the
one constant it has for them; train.py has the flag), its per-step time read from its own
log's timestamps (every 100 steps), the checkpoint histograms a short run does not reach added
at the cost of those it did; its PPO's per-update time is read from the wall times of its
TensorBoard events; CPU is scaled at each process's CPU/wall ratio. The reference mode reports
its loop's steps, wall and CPU itself, scaled linearly in the steps.
`--total-timesteps`, `--reward-max-steps`, `--fast-total-timesteps`, `--eval-episodes` and `--n-comparisons`
shrink our side (and the PPO workload both sides are scaled to) for tests; a run that uses any
of them says so, and its ratios are not the comparison. `--validate` runs the write-up's code
and the reference mode instead of ours, at the sizes asked, and prints reference / code per
stage. Writes JSON (--out) with the machine and the scratch environment's packages.
"""

import argparse
import contextlib
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import timing
from rlhf import agent as agent_lib
from rlhf import cli

REFERENCE = os.path.join(ROOT, "benchmarks", "writeup_reference.py")
WRITEUP_REWARD_STEPS = 100_000  # the write-up's reward model training
WRITEUP_PPO_STEPS = 1_000_000  # the write-up's PPO runs
PPO_BATCH = 4 * 128  # CleanRL's envs x steps, both sides: a run does total // batch iterations

WRITEUP_REPO = "https://github.com/daoplays/RLHF"
WRITEUP_COMMIT = "e1bd48e84558a5466d294de6513c2e4950d32ef8"  # "start tidying up example", 2023-10-21: the write-up's code
MOVING_DOT_REPO = "https://github.com/mrahtz/gym-moving-dot"
MOVING_DOT_COMMIT = "7fbcc90fc06297a4aaefe80841db0474cc2dc68a"  # its last commit, 2019-12-24
# what the write-up's moving_dot/*.py import, at releases of its time (Oct 2023) that install on Python 3.11;
# torch at the one release this machine has on disk. numpy 1.x: gymnasium 0.29's env checker uses np.bool8.
SCRATCH_PACKAGES = ("torch==2.13.0", "gymnasium==0.29.1", "numpy==1.26.4", "matplotlib==3.8.4", "tensorboard==2.15.2")
WRITEUP_CHECKPOINTS = (0, 1000, 10000, 25000, 100000)  # learn_reward.py's checkpoint_intervals
GENERATE = "from make_preferences_db import make_db; make_db('preferences.db')"
REWARD_LOOP = "    for epoch in range(100000):\n"
REWARD_LOG = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)\x1b\[94m INFO: (\d+) ", re.M)  # log_blue(f"{epoch} {loss}")

# gym_moving_dot at MOVING_DOT_COMMIT is an old-gym env (reset -> obs, step -> 4 values) whose observation
# is a 210 x 160 x 3 frame; the write-up's train.py makes it with gymnasium.make and reads a (y, x)
# position from each observation (its networks take 2 inputs; its generator's bounds are (y, x) = (4, 4)
# to (205, 155)). The shim: gym -> gymnasium in the imports (so the package registers with gymnasium's
# registry), and the id the write-up uses pointed at a subclass that keeps the commit's step.
SHIM = '''"""Added by benchmarks/versus_writeup.py: MovingDotDiscreteEnv as the write-up's code uses it.

The commit's moves, clipping, reward and episode length are kept (its step runs as it is; the frame
it returns is dropped); changed: gymnasium's reset and step signatures, the observation (the (y, x)
position, float32, the order and bounds of the write-up's generator) and a dot half-size of 4, which
makes the bounds the ones the write-up names, (4, 4) to (205, 155).
"""

import gymnasium
import numpy as np

from gym_moving_dot.envs.moving_dot_env import MovingDotDiscreteEnv


class MovingDotPositionEnv(MovingDotDiscreteEnv):
    def __init__(self, render_mode=None):
        super().__init__()
        self.render_mode = render_mode
        self.dot_size = [4, 4]
        self.observation_space = gymnasium.spaces.Box(low=0, high=np.array([209, 159]), shape=(2,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        gymnasium.Env.reset(self, seed=seed)
        # the commit's reset, with numpy's Generator (integers) where old gym's seeding gave a RandomState (randint)
        self.pos = [int(self.np_random.integers(0, 160)), int(self.np_random.integers(0, 210))] if self.random_start else [0, 0]
        self.steps = 0
        return self.position(), {}

    def step(self, action):
        _, reward, episode_over, info = super().step(action)
        return self.position(), float(reward), False, episode_over, info

    def position(self):
        return np.array([self.pos[1], self.pos[0]], dtype=np.float32)
'''
MOVING_DOT_PATCHES = (  # (file, old, new): each old text must occur exactly once in the pinned commit
    ("gym_moving_dot/__init__.py", "from gym.envs.registration import register",
     "from gymnasium.envs.registration import register"),
    ("gym_moving_dot/__init__.py", "id='MovingDotDiscreteNoFrameskip-v0',\n    entry_point='gym_moving_dot.envs.moving_dot_env:MovingDotDiscreteEnv'",
     "id='MovingDotDiscreteNoFrameskip-v0',\n    entry_point='gym_moving_dot.envs.position_env:MovingDotPositionEnv'"),
    ("gym_moving_dot/envs/moving_dot_env.py", "import gym\nfrom gym import spaces\nfrom gym.utils import seeding",
     "import gymnasium as gym\nfrom gymnasium import spaces\nfrom gymnasium.utils import seeding"),
)
SCRATCH_FORMAT = 1  # bump when the build (packages, patches, shim) changes: a cached environment is rebuilt


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="The write-up's pipeline (its code, or a reference-mode reproduction) and ours side by side; prints the ratios.")
    p.add_argument("--seed", type=int, default=1, help="seed of every stage, both sides (the write-up's generator and reward stage seed nothing)")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "versus_writeup.json"), help="JSON results file")
    p.add_argument("--scratch-dir", default=os.path.join(ROOT, "benchmarks", "results", "writeup_env"),
                   help="where the write-up's environment and code are built and cached")
    p.add_argument("--writeup-repo", default=WRITEUP_REPO, help=f"git URL or local git directory of the write-up's code (at {WRITEUP_COMMIT[:7]})")
    p.add_argument("--moving-dot-repo", default=MOVING_DOT_REPO, help=f"git URL or local git directory of gym-moving-dot (at {MOVING_DOT_COMMIT[:7]})")
    p.add_argument("--reference-mode", action="store_true", help="run the reference-mode reproduction, not the write-up's code")
    p.add_argument("--validate", action="store_true", help="run the write-up's code and the reference mode side by side, not ours")
    p.add_argument("--repeats", type=cli.positive_int, default=1, help="rounds of both sides, alternating which goes first")
    p.add_argument("--quick", action="store_true",
                   help="the write-up's reward stage at 10,000 steps and PPO at 100,000, extrapolated to the full workloads")
    p.add_argument("--reference-reward-steps", type=cli.positive_int, default=None,
                   help="steps the write-up's reward stage runs (default: 100,000, the write-up's; 10,000 with --quick)")
    p.add_argument("--reference-total-timesteps", type=cli.positive_int, default=None,
                   help="steps the write-up's PPO runs (default: --total-timesteps; 100,000 with --quick)")
    p.add_argument("--total-timesteps", type=cli.positive_int, default=WRITEUP_PPO_STEPS,
                   help="PPO workload of the comparison: our --rlhf run's steps, and the write-up's after extrapolation (write-up: 1000000)")
    p.add_argument("--n-comparisons", type=cli.positive_int, default=10_000, help="segments and comparisons of both generators (write-up: 10000)")
    p.add_argument("--reward-max-steps", type=cli.positive_int, default=None, help="for tests: cap our reward model's steps (default: its own)")
    p.add_argument("--fast-total-timesteps", type=cli.positive_int, default=None, help="for tests: our fast preset's steps (default: the preset's)")
    p.add_argument("--eval-episodes", type=cli.positive_int, default=None, help="for tests: our PPO runs' evaluation episodes (default: their own)")
    args = p.parse_args(argv)
    if args.total_timesteps < PPO_BATCH:
        p.error(f"--total-timesteps must be >= {PPO_BATCH} (one PPO iteration)")
    if args.validate and args.reference_mode:
        p.error("--validate compares the write-up's code with the reference mode: drop --reference-mode")
    args.reference_reward_steps = args.reference_reward_steps or (10_000 if args.quick else WRITEUP_REWARD_STEPS)
    args.reference_total_timesteps = args.reference_total_timesteps or (100_000 if args.quick else args.total_timesteps)
    if args.reference_total_timesteps < PPO_BATCH or args.reference_reward_steps < 1:
        p.error(f"--reference-total-timesteps must be >= {PPO_BATCH} and --reference-reward-steps >= 1")
    if not args.reference_mode and (args.reference_reward_steps < 300 or args.reference_total_timesteps < 2 * PPO_BATCH):
        p.error(f"the write-up's code is timed from its logs: --reference-reward-steps >= 300 and --reference-total-timesteps >= {2 * PPO_BATCH}"
                " (or --reference-mode)")
    args.shrunk = [flag for flag, value, default in (
        ("--total-timesteps", args.total_timesteps, WRITEUP_PPO_STEPS), ("--n-comparisons", args.n_comparisons, 10_000),
        ("--reward-max-steps", args.reward_max_steps, None), ("--fast-total-timesteps", args.fast_total_timesteps, None),
        ("--eval-episodes", args.eval_episodes, None)) if value != default]
    return args


# --- the write-up's code in a scratch environment ---------------------------------------------

class ScratchError(Exception):
    """The write-up's code or its environment could not be had; the message says why, in one line."""


def run_checked(command, what, log=None, cwd=None):
    """Run a build command; a failure raises ScratchError with its last output line."""
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    if log is not None:
        log.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines() or ["(no output)"]
        raise ScratchError(f"{what} failed: {last[-1]}")
    return result.stdout


def fetch_commit(repo, commit, dest, log=None):
    """The files of `commit` of `repo` (a git URL or a local git directory, bare or not) into dest: a
    shallow fetch of that one commit into a throwaway repository, then git archive."""
    with tempfile.TemporaryDirectory() as git_dir:
        run_checked(["git", "init", "-q", "--bare", git_dir], "git init", log)
        source = os.path.abspath(repo) if os.path.isdir(repo) else repo
        run_checked(["git", "--git-dir", git_dir, "fetch", "-q", "--depth", "1", source, commit], f"fetching {commit[:7]} from {repo}", log)
        fetched = run_checked(["git", "--git-dir", git_dir, "rev-parse", "FETCH_HEAD"], "git rev-parse", log).strip()
        if fetched != commit:
            raise ScratchError(f"{repo} gave {fetched} for {commit}")
        os.makedirs(dest)
        archive = subprocess.run(["git", "--git-dir", git_dir, "archive", "--format=tar", commit], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)


def patch_file(path, old, new):
    """Replace the one occurrence of `old` in a copied file; anything else means the file is not the pinned one."""
    with open(path) as f:
        text = f.read()
    if text.count(old) != 1:
        raise ScratchError(f"{path}: {old.splitlines()[0].strip()!r} found {text.count(old)} times, not once: not the pinned code")
    with open(path, "w") as f:
        f.write(text.replace(old, new))


def apply_shim(package_dir):
    """gym_moving_dot made what the write-up's code expects (MOVING_DOT_PATCHES, SHIM)."""
    for name, old, new in MOVING_DOT_PATCHES:
        patch_file(os.path.join(package_dir, name), old, new)
    with open(os.path.join(package_dir, "gym_moving_dot", "envs", "position_env.py"), "w") as f:
        f.write(SHIM)


def scratch_spec():
    return {"format": SCRATCH_FORMAT, "python": sys.version.split()[0], "packages": list(SCRATCH_PACKAGES),
            "writeup_commit": WRITEUP_COMMIT, "moving_dot_commit": MOVING_DOT_COMMIT}


def scratch_python(scratch_dir):
    return os.path.join(scratch_dir, "venv", "bin", "python")


def build_scratch(args):
    """The write-up's environment and code under --scratch-dir, built once: reused while its
    manifest.json (written last) matches scratch_spec(). Returns the manifest."""
    scratch = os.path.abspath(args.scratch_dir)
    manifest_path = os.path.join(scratch, "manifest.json")
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
        if manifest.get("spec") == scratch_spec() and os.path.exists(scratch_python(scratch)):
            return {**manifest, "cached": True}
    for part in ("venv", "writeup", "gym-moving-dot", "manifest.json"):  # only what this function makes
        path = os.path.join(scratch, part)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    os.makedirs(scratch, exist_ok=True)
    start = time.perf_counter()
    print(f"versus_writeup: building the write-up's environment in {scratch} (once; see build.log there) ...", flush=True)
    with open(os.path.join(scratch, "build.log"), "w") as log:
        fetch_commit(args.writeup_repo, WRITEUP_COMMIT, os.path.join(scratch, "writeup"), log)
        fetch_commit(args.moving_dot_repo, MOVING_DOT_COMMIT, os.path.join(scratch, "gym-moving-dot"), log)
        apply_shim(os.path.join(scratch, "gym-moving-dot"))
        run_checked([sys.executable, "-m", "venv", os.path.join(scratch, "venv")], "python -m venv", log)
        python = scratch_python(scratch)
        run_checked([python, "-m", "pip", "install", "-q", *SCRATCH_PACKAGES], "pip install " + " ".join(SCRATCH_PACKAGES), log)
        # --no-deps: its setup.py asks for the old `gym`, which the shim replaces by gymnasium
        run_checked([python, "-m", "pip", "install", "-q", "--no-deps", os.path.join(scratch, "gym-moving-dot")], "pip install gym-moving-dot", log)
        run_checked([python, "-c", "import gymnasium, gym_moving_dot, matplotlib, torch.utils.tensorboard;"
                     " e = gymnasium.make('MovingDotDiscreteNoFrameskip-v0'); e.reset(seed=0); e.step(0)"], "the environment's smoke test", log)
        freeze = run_checked([python, "-m", "pip", "freeze"], "pip freeze", log).splitlines()
    manifest = {"spec": scratch_spec(), "writeup_repo": args.writeup_repo, "moving_dot_repo": args.moving_dot_repo,
                "freeze": freeze, "build_s": time.perf_counter() - start}
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=2)
    return {**manifest, "cached": False}


def writeup_code(scratch_dir, workdir, args):
    """A fresh copy of the write-up's moving_dot/ in the round's folder, where its scripts read and
    write their files (preferences.db, rewards_model, images/, runs/); the patches of a shortened
    or shrunk run applied to the copy. Returns those patches, as text."""
    source = os.path.join(os.path.abspath(scratch_dir), "writeup", "moving_dot")
    for name in os.listdir(source):
        shutil.copy(os.path.join(source, name), workdir)
    patches = []
    if args.reference_reward_steps != WRITEUP_REWARD_STEPS:
        patch_file(os.path.join(workdir, "learn_reward.py"), REWARD_LOOP, REWARD_LOOP.replace("100000", str(args.reference_reward_steps)))
        patches.append(f"learn_reward.py: range(100000) -> range({args.reference_reward_steps})")
    if args.n_comparisons != 10_000:
        for constant in ("n_segments", "n_comparisons"):
            patch_file(os.path.join(workdir, "make_preferences_db.py"), f"\t{constant} = 10000\n", f"\t{constant} = {args.n_comparisons}\n")
            patches.append(f"make_preferences_db.py: {constant} = 10000 -> {args.n_comparisons}")
    return patches


def writeup_commands(args):
    """(name, command) of the write-up's stages, run by the scratch python in the round's folder."""
    return [("generate", ["-c", GENERATE]), ("reward", ["learn_reward.py"]),
            ("ppo", ["train.py", "--seed", str(args.seed), "--rlhf", "--total-timesteps", str(args.reference_total_timesteps)])]


@contextlib.contextmanager
def stage_python(python, environment):
    """timing.run_stage runs sys.executable with os.environ: for one stage, the write-up's python and its variables."""
    saved_python, saved = sys.executable, {k: os.environ.get(k) for k in environment}
    sys.executable = python
    os.environ.update(environment)
    try:
        yield
    finally:
        sys.executable = saved_python
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def writeup_reward_timing(output, steps):
    """learn_reward.py's loop from its own log (a timestamped line every 100 steps): the wall per
    step (mean over the 100-step spans without a checkpoint) and per checkpoint histogram (its
    span's excess over the others')."""
    logged = [(int(epoch), datetime.fromisoformat(stamp).timestamp()) for stamp, epoch in REWARD_LOG.findall(output)]
    spans = [(e0, t1 - t0) for (e0, t0), (_, t1) in zip(logged, logged[1:])]
    plain = [span for e0, span in spans if e0 not in WRITEUP_CHECKPOINTS]
    if not plain:
        raise ValueError(f"learn_reward.py logged {len(logged)} lines: too few to time its steps (run >= 300)")
    per_step = float(np.mean(plain)) / 100
    checks = [span - 100 * per_step for e0, span in spans if e0 in WRITEUP_CHECKPOINTS]
    return {"steps": steps, "per_step_wall_s": per_step, "check_wall_s": float(np.mean(checks)), "checks_run": len(checks) + 1}  # + the final one


def event_wall_times(run_dir, tag):
    """The wall times of one tag's events in a TensorBoard run folder."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    times = []
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        for event in EventFileLoader(path).Load():
            if any(value.tag == tag for value in event.summary.value):
                times.append(event.wall_time)
    return sorted(times)


def writeup_ppo_timing(workdir, steps):
    """train.py's loop from its TensorBoard run: charts/SPS is written once an update, so the wall
    per update is the mean gap between them (the first update's own time, warm-up, left out)."""
    runs = glob.glob(os.path.join(workdir, "runs", "*"))
    times = event_wall_times(runs[0], "charts/SPS") if len(runs) == 1 else []
    if len(times) < 2:
        raise ValueError(f"train.py wrote {len(times)} update events in {len(runs)} runs: run >= {2 * PPO_BATCH} steps")
    return {"steps": len(times) * PPO_BATCH, "per_step_wall_s": (times[-1] - times[0]) / (len(times) - 1) / PPO_BATCH}


def writeup_timing(name, output, workdir, args):
    """What a write-up stage's own output says of its loop (nothing for the generator, whose size is fixed)."""
    if name == "reward":
        return writeup_reward_timing(output, args.reference_reward_steps)
    if name == "ppo":
        return writeup_ppo_timing(workdir, args.reference_total_timesteps)
    return {"steps": args.n_comparisons}


def extrapolate_writeup(measured, target_steps):
    """A write-up stage's figures at target_steps: its measured process plus the missing steps at its
    measured wall per step and, for the reward stage, the checkpoint histograms a short run did not
    reach at their measured cost; CPU at the process's CPU/wall ratio; peak memory as measured."""
    if measured.get("per_step_wall_s") is None or target_steps == measured["steps"]:
        return {**measured, "extrapolated": False, "factor": 1.0}
    missing_checks = sum(measured["steps"] <= c < target_steps for c in WRITEUP_CHECKPOINTS[:-1]) if "check_wall_s" in measured else 0
    added = (target_steps - measured["steps"]) * measured["per_step_wall_s"] + missing_checks * measured.get("check_wall_s", 0.0)
    return {**measured, "wall_s": measured["wall_s"] + added, "cpu_s": measured["cpu_s"] * (1 + added / measured["wall_s"]),
            "extrapolated": True, "factor": target_steps / measured["steps"], "missing_checks": missing_checks,
            "loop_wall_s": measured["steps"] * measured["per_step_wall_s"], "measured_wall_s": measured["wall_s"], "measured_cpu_s": measured["cpu_s"]}


# --- reference mode and the comparison ----------------------------------------------------------

def reported_timing(output):
    """The `timing: {...}` line a reference stage ends with: its main loop's steps, wall and CPU seconds."""
    lines = [line for line in output.splitlines() if line.startswith("timing: ")]
    return json.loads(lines[-1][len("timing: "):])


def extrapolate(measured, target_steps):
    """A reference stage's figures at target_steps: its loop's wall and CPU (steps, loop_wall_s,
    loop_cpu_s) scaled linearly in the steps, the rest of the process (start-up, loading) as
    measured, peak memory as measured."""
    factor = target_steps / measured["steps"]
    if factor == 1:
        return {**measured, "extrapolated": False, "factor": 1.0}
    return {**measured, "wall_s": measured["wall_s"] + (factor - 1) * measured["loop_wall_s"],
            "cpu_s": measured["cpu_s"] + (factor - 1) * measured["loop_cpu_s"], "extrapolated": True, "factor": factor,
            "measured_wall_s": measured["wall_s"], "measured_cpu_s": measured["cpu_s"]}


def stage_commands(args):
    """(name, command) of each stage of our side and of the reference mode, in pipeline order."""
    seed = ["--seed", str(args.seed)]
    evaluation = ["--eval-episodes", str(args.eval_episodes)] if args.eval_episodes else []
    ours = [
        ("generate", ["make_preferences_db.py", *seed, "--db", "prefs.db", "--n-segments", str(args.n_comparisons),
                      "--n-comparisons", str(args.n_comparisons)]),
        ("reward", ["train_reward_model.py", *seed, "--no-progress", "--db", "prefs.db", "--out", "rm.pt",
                    *(["--max-steps", str(args.reward_max_steps)] if args.reward_max_steps else [])]),
        ("ppo", ["ppo_rlhf.py", *seed, "--no-progress", "--rlhf", "--reward-model", "rm.pt", "--total-timesteps",
                 str(args.total_timesteps), "--save-path", "agent_rlhf.pt", *evaluation]),
        ("fast", ["ppo_rlhf.py", *seed, "--no-progress", "--preset", "fast", "--rlhf", "--reward-model", "rm.pt",
                  "--save-path", "agent.pt", *(["--total-timesteps", str(args.fast_total_timesteps)] if args.fast_total_timesteps else []), *evaluation]),
    ]
    reference = [
        ("generate", [REFERENCE, "generate", *seed, "--db", "preferences.db", "--n-segments", str(args.n_comparisons),
                      "--n-comparisons", str(args.n_comparisons)]),
        ("reward", [REFERENCE, "reward", *seed, "--db", "preferences.db", "--out", "rewards_model", "--steps",
                    str(args.reference_reward_steps)]),
        ("ppo", [REFERENCE, "ppo", *seed, "--rlhf", "rewards_model", "--total-timesteps", str(args.reference_total_timesteps)]),
    ]
    return [(name, [os.path.join(ROOT, script), *rest]) for name, (script, *rest) in ours], reference


def mean_over_rounds(runs):
    """One stage over rounds: the mean of every float figure, the largest peak memory, the rest
    (step counts, flags) from the first round, and each round's wall, CPU and peak."""
    stage = {k: (float(np.mean([r[k] for r in runs])) if isinstance(v, float) else v) for k, v in runs[0].items()}
    stage["peak_mb"] = max(r["peak_mb"] for r in runs)
    stage["rounds"] = [{k: r[k] for k in ("wall_s", "cpu_s", "peak_mb")} for r in runs]
    return stage


def combine(stages):
    """A pipeline of stage processes run one after the other: summed time, the largest peak."""
    return {"wall_s": sum(s["wall_s"] for s in stages), "cpu_s": sum(s["cpu_s"] for s in stages),
            "peak_mb": max(s["peak_mb"] for s in stages), "extrapolated": any(s.get("extrapolated") for s in stages)}


def fmt_steps(n):
    return f"{n:,}"


def reference_side(args):
    return {"label": "reference", "mode": "reference", "commands": stage_commands(args)[1], "python": sys.executable, "environment": {}}


def writeup_side(args):
    """The write-up's side: its code in the scratch environment, or (forced, or where that cannot be
    had) the reference mode. Returns (side, why): why is None when it is the code."""
    if args.reference_mode:
        return reference_side(args), "--reference-mode was given"
    try:
        manifest = build_scratch(args)
    except (ScratchError, OSError, subprocess.CalledProcessError) as error:
        return reference_side(args), (str(error).strip().splitlines() or [type(error).__name__])[0]
    # MPLBACKEND: its learn_reward.py calls plt.show() at each checkpoint, which on a desktop would wait for a person
    return {"label": "write-up", "mode": "code", "commands": writeup_commands(args), "python": scratch_python(args.scratch_dir),
            "environment": {"MPLBACKEND": "Agg"}, "manifest": manifest}, None


def describe(side, args):
    """One sentence: what the write-up's side is."""
    if side["mode"] == "code":
        cached = "cached" if side["manifest"]["cached"] else f"built in {side['manifest']['build_s']:.0f} s"
        return (f"the write-up's side is its code (daoplays/RLHF {WRITEUP_COMMIT[:7]}, moving_dot/; gym_moving_dot {MOVING_DOT_COMMIT[:7]}"
                f" behind a gymnasium shim) in a scratch environment ({os.path.abspath(args.scratch_dir)}, {cached}: {', '.join(SCRATCH_PACKAGES)})")
    return "the write-up's side is a reference-mode reproduction (benchmarks/writeup_reference.py) of its workload, not its code"


def main(args):
    writeup, why = writeup_side(args)
    if why is not None and args.validate:
        sys.exit(f"versus_writeup: --validate needs the write-up's code, which cannot be had: {why}")
    if why is not None:
        print(f"versus_writeup: the reference mode (benchmarks/writeup_reference.py), not the write-up's code: {why}.")
    mode_line = describe(writeup, args)
    print(f"versus_writeup: {mode_line}.")
    ours = {"label": "ours", "mode": "ours", "commands": stage_commands(args)[0], "python": sys.executable, "environment": {}}
    sides = [writeup, reference_side(args)] if args.validate else [ours, writeup]
    runs = {side["label"]: {name: [] for name, _ in side["commands"]} for side in sides}
    reward_target, ppo_target = WRITEUP_REWARD_STEPS, args.total_timesteps // PPO_BATCH * PPO_BATCH
    targets = {"generate": args.n_comparisons, "reward": reward_target, "ppo": ppo_target}
    patches = []
    load_start = os.getloadavg()
    for round_ in range(args.repeats):
        with tempfile.TemporaryDirectory() as dir0, tempfile.TemporaryDirectory() as dir1:
            workdirs = dict(zip([side["label"] for side in sides], (dir0, dir1)))
            if writeup["mode"] == "code":
                patches = writeup_code(args.scratch_dir, workdirs[writeup["label"]], args)
            # the round: stage by stage, both sides, the first side alternating between rounds
            for i in range(max(len(side["commands"]) for side in sides)):
                for side in (sides if round_ % 2 == 0 else sides[::-1]):
                    if i >= len(side["commands"]):
                        continue
                    name, command = side["commands"][i]
                    workdir = workdirs[side["label"]]
                    print(f"round {round_ + 1}/{args.repeats}: {side['label']} {name} ...", flush=True)
                    with stage_python(side["python"], side["environment"]):
                        result = timing.run_stage(command, workdir, "versus_writeup")
                    output = result.pop("output")
                    if side["mode"] == "reference":
                        result = extrapolate({**result, **reported_timing(output)}, targets[name])
                    elif side["mode"] == "code":
                        result = extrapolate_writeup({**result, **writeup_timing(name, output, workdir, args)}, targets[name])
                    elif name in ("ppo", "fast"):
                        summary = agent_lib.load(os.path.join(workdir, "agent_rlhf.pt" if name == "ppo" else "agent.pt"))[1]["summary"]
                        result.update(steps=summary["global_step"], greedy=summary["greedy"]["normalized_return"],
                                      sampled=summary["sampled"]["normalized_return"])
                    runs[side["label"]][name].append(result)
    stages = {label: {name: mean_over_rounds(r) for name, r in side_runs.items()} for label, side_runs in runs.items()}
    load_end = os.getloadavg()
    record = {"machine": timing.machine(), "load_average": {"start": load_start, "end": load_end},
              "writeup_side": {"mode": writeup["mode"], "description": mode_line, "fallback_reason": why, "patches": patches,
                               "shim": [f"{name}: {old!r} -> {new!r}" for name, old, new in MOVING_DOT_PATCHES] if writeup["mode"] == "code" else [],
                               "scratch": writeup.get("manifest")},
              "validate": args.validate, "quick": args.quick, "seed": args.seed, "repeats": args.repeats, "shrunk": args.shrunk,
              "targets": targets, "reference_steps": {"reward": args.reference_reward_steps, "ppo": args.reference_total_timesteps}}
    if args.validate:
        record.update(report_validation(stages, args, patches))
    else:
        record.update(report_comparison(stages["ours"], stages[writeup["label"]], writeup, args, targets, patches, mode_line, load_start, load_end))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2)
    print(f"wrote {args.out}")
    return record


def print_extrapolation(side_name, name, stage, target):
    """The line that says how a shortened stage was scaled."""
    if not stage["extrapolated"]:
        return
    if "per_step_wall_s" in stage:
        checks = (f", its checkpoint histograms {stage['check_wall_s']:.1f} s each, {stage['missing_checks']} more at full size"
                  if "check_wall_s" in stage else "")
        source = "its log's timestamps" if name == "reward" else "its TensorBoard events' wall times"
        print(f"extrapolated: {side_name}'s {name} stage ran {fmt_steps(stage['steps'])} steps in {stage['measured_wall_s']:.1f} s"
              f" ({stage['per_step_wall_s'] * 1000:.2f} ms a step, from {source}{checks}); scaled to {fmt_steps(target)} steps,"
              f" its start-up not scaled, CPU at its CPU/wall ratio")
    else:
        print(f"extrapolated: {side_name}'s {name} stage ran {fmt_steps(stage['steps'])} steps in {stage['measured_wall_s']:.1f} s"
              f" (loop {stage['loop_wall_s']:.1f} s); its loop scaled x{stage['factor']:.2f} to {fmt_steps(target)} steps, its start-up not scaled")


def report_comparison(ours, reference, writeup, args, targets, patches, mode_line, load_start, load_end):
    """Ours against the write-up's side: the rows, printed; returns the record's rows and stages."""
    code = writeup["mode"] == "code"
    rows = [
        {"row": "reward stage", "what": f"write-up: {fmt_steps(targets['reward'])} fixed steps; ours: train_reward_model.py defaults",
         "ours": ours["reward"], "reference": reference["reward"]},
        {"row": "PPO --rlhf (the write-up's workload)",
         "what": f"{fmt_steps(targets['ppo'])} steps; " + ("its train.py (CleanRL's ppo.py less GAE, the entropy bonus and value clipping)"
                                                           " against ours on CleanRL's defaults" if code else "CleanRL's defaults, both sides")
                 + "; ours includes its final evaluation",
         "ours": ours["ppo"], "reference": reference["ppo"]},
        {"row": "nothing -> trained agent", "what": "write-up: generate + reward + ppo --rlhf; ours: `make run` (fast preset)",
         "ours": combine([ours["generate"], ours["reward"], ours["fast"]]),
         "reference": combine([reference["generate"], reference["reward"], reference["ppo"]])},
    ]
    rows[2]["ours"].update(greedy=ours["fast"]["greedy"], sampled=ours["fast"]["sampled"])
    for row in rows:
        row["extrapolated"] = bool(row["reference"].get("extrapolated"))
        row["ratio_wall"] = row["reference"]["wall_s"] / row["ours"]["wall_s"]

    # print
    side_name = "the write-up" if code else "the reference"
    print()
    print(f"Versus the write-up, seed {args.seed}, {args.repeats} round(s). {mode_line[0].upper() + mode_line[1:]}.")
    if args.shrunk:
        print(f"SHRUNK for a test ({', '.join(args.shrunk)}): these ratios are not the comparison.")
    label = "write-up wall" if code else "reference wall"
    header = f"{'row':<38}{'ours wall':>10}{'CPU':>8}{'MB':>6}{label:>16}{'CPU':>9}{'MB':>6}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        o, r = row["ours"], row["reference"]
        note = "  extrapolated" if row["extrapolated"] else ""
        print(f"{row['row']:<38}{o['wall_s']:>10.1f}{o['cpu_s']:>8.1f}{o['peak_mb']:>6.0f}{r['wall_s']:>16.1f}{r['cpu_s']:>9.1f}"
              f"{r['peak_mb']:>6.0f}{row['ratio_wall']:>7.1f}x{note}")
        print(f"{'':<4}{row['what']}")
    print(f"ratio: {side_name}'s wall / our wall. wall and CPU in seconds, peak resident memory in MB.")
    print(f"load average (1 min) at the start {load_start[0]:.2f}, at the end {load_end[0]:.2f}, on {os.cpu_count()} CPUs: the"
          f" write-up's side runs torch on its default threads, as the write-up did, which other busy processes slow far more"
          f" than our single-threaded stages")
    if patches:
        print(f"patched (copies of the write-up's code, this run only): {'; '.join(patches)}")
    for name in ("reward", "ppo"):
        print_extrapolation(side_name, name, reference[name], targets[name])
    print(f"our agents' normalized return (greedy, sampled): fast preset {ours['fast']['greedy']:.4f}, {ours['fast']['sampled']:.4f};"
          f" {fmt_steps(ours['ppo']['steps'])}-step --rlhf run {ours['ppo']['greedy']:.4f}, {ours['ppo']['sampled']:.4f}."
          f" The write-up's code does not evaluate its agent (it reports training returns only).")
    return {"rows": rows, "stages": {"ours": ours, "reference": reference}}


def measured(stage):
    """A stage's figures as run, before any extrapolation."""
    return {"wall_s": stage.get("measured_wall_s", stage["wall_s"]), "cpu_s": stage.get("measured_cpu_s", stage["cpu_s"]), "peak_mb": stage["peak_mb"]}


def report_validation(stages, args, patches):
    """The write-up's code against the reference mode, stage by stage, as run and extrapolated:
    how far the reference mode's figures are from the code's. Returns the record's rows and stages."""
    code, reference = stages["write-up"], stages["reference"]
    rows = [{"row": name, "code": code[name], "reference": reference[name],
             "code_measured": measured(code[name]), "reference_measured": measured(reference[name])} for name in ("generate", "reward", "ppo")]
    rows.append({"row": "pipeline", "code": combine(list(code.values())), "reference": combine(list(reference.values())),
                 "code_measured": combine([measured(s) for s in code.values()]), "reference_measured": combine([measured(s) for s in reference.values()])})
    for row in rows:
        row["measured_ratio_wall"] = row["reference_measured"]["wall_s"] / row["code_measured"]["wall_s"]
        row["ratio_wall"] = row["reference"]["wall_s"] / row["code"]["wall_s"]
    ppo_target = args.total_timesteps // PPO_BATCH * PPO_BATCH

    # print
    print()
    print(f"The reference mode against the write-up's code, seed {args.seed}, {args.repeats} round(s): its reward stage run at"
          f" {fmt_steps(args.reference_reward_steps)} steps and its PPO at {fmt_steps(args.reference_total_timesteps)}, then both sides"
          f" extrapolated to {fmt_steps(WRITEUP_REWARD_STEPS)} and {fmt_steps(ppo_target)}.")
    header = (f"{'stage':<10}{'code wall':>10}{'CPU':>8}{'MB':>6}{'reference wall':>16}{'CPU':>8}{'MB':>6}{'ratio':>8}"
              f"{'extrapolated: code':>20}{'reference':>11}{'ratio':>8}")
    print(header)
    print("-" * len(header))
    for row in rows:
        c, r = row["code_measured"], row["reference_measured"]
        print(f"{row['row']:<10}{c['wall_s']:>10.1f}{c['cpu_s']:>8.1f}{c['peak_mb']:>6.0f}{r['wall_s']:>16.1f}{r['cpu_s']:>8.1f}{r['peak_mb']:>6.0f}"
              f"{row['measured_ratio_wall']:>7.2f}x{row['code']['wall_s']:>20.1f}{row['reference']['wall_s']:>11.1f}{row['ratio_wall']:>7.2f}x")
    print("ratio: reference wall / code wall. wall and CPU in seconds, peak resident memory in MB.")
    if patches:
        print(f"patched (copies of the write-up's code, this run only): {'; '.join(patches)}")
    for name, target in (("reward", WRITEUP_REWARD_STEPS), ("ppo", ppo_target)):
        print_extrapolation("the write-up", name, code[name], target)
        print_extrapolation("the reference", name, reference[name], target)
    return {"rows": rows, "stages": stages}


if __name__ == "__main__":
    main(parse_args())
