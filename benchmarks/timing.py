"""Shared by the timing benchmarks: run one stage as its own process, and describe the machine."""

import os
import platform
import subprocess
import sys
import time


def run_stage(args, workdir, caller):
    """Run a Python script with ``args`` in ``workdir``; return wall s, CPU s (user + system),
    peak resident MB of that process (os.wait4) and its output. A failure exits, naming ``caller``."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, *args], cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        sys.exit(f"{caller}: {' '.join(map(str, args))} failed:\n{output}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024, "output": output}


def machine():
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "processor": platform.processor()}
