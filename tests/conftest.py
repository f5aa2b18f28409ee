import os
import sys

import pytest

# the stage scripts live at the repo root, the shared modules in rlhf/; the labeling page, the
# experiment runner and studies and the speed benchmarks in their folders: all imported directly
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for folder in ("benchmarks", "experiments", "labeling", ""):
    sys.path.insert(0, os.path.join(ROOT, folder) if folder else ROOT)

# MuJoCo (Hopper) picks its renderer when it is first imported; no display here
os.environ.setdefault("MUJOCO_GL", "egl")

# one thread per test process, and per process it starts (set before torch and numpy are imported):
# `make test` runs a worker on every core already, and the extra threads of torch's and OpenBLAS's
# pools only spin against the other workers on tensors this small (the benchmarks' fixtures took 3x
# the CPU time with them); the stages set torch's count to 1 themselves when they start
os.environ.setdefault("OMP_NUM_THREADS", "1")

# `-n auto` (pytest-xdist): whole files to a worker, the slowest files first. A file's module fixtures
# (a trained model, the experiment grid, the loop's reference run, a browser) are then built once,
# not once per worker that runs one of its tests; and with the long files handed out first, the
# short ones fill in at the end. (--dist loadgroup would group finer, but on pytest 9.2 it silently
# groups nothing: pytest-xdist issue 1386.) An explicit --dist other than load keeps xdist's own.
SLOWEST_FIRST = ("test_reward_model.py", "test_benchmarks.py", "test_run_experiments.py", "test_label_preferences.py",
                 "test_value_iteration.py", "test_ppo.py", "test_loop_resume.py", "test_envs.py", "test_rlhf_loop.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False  # in collection order, not by the number of tests in a file
    return LoadFileScheduling(config, log)
