import os
import sys

# the stage scripts and shared modules live at the repo root and are imported directly
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# MuJoCo (Hopper) picks its renderer when it is first imported; no display here
os.environ.setdefault("MUJOCO_GL", "egl")
