import os
import sys

# the stage scripts live at the repo root, the shared modules in rlhf/; the labeling page, the
# experiment runner and studies and the speed benchmarks in their folders: all imported directly
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for folder in ("benchmarks", "experiments", "labeling", ""):
    sys.path.insert(0, os.path.join(ROOT, folder) if folder else ROOT)

# MuJoCo (Hopper) picks its renderer when it is first imported; no display here
os.environ.setdefault("MUJOCO_GL", "egl")
