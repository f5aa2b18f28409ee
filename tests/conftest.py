import os
import sys

# the stage scripts and shared modules live at the repo root and are imported directly
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# MuJoCo (Hopper) picks its renderer when it is first imported; no display here
os.environ.setdefault("MUJOCO_GL", "egl")

# one thread per test process, and per process it starts (set before torch and numpy are imported):
# `make test` runs a worker on every core already, and the extra threads of torch's and OpenBLAS's
# pools only spin against the other workers on tensors this small (the benchmarks' fixtures took 3x
# the CPU time with them); the stages set torch's count to 1 themselves when they start
os.environ.setdefault("OMP_NUM_THREADS", "1")
