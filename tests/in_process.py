"""A stage script's command line run in the test's own process: `python SCRIPT ARGS` without the
seconds a new interpreter spends importing torch. The script's `if __name__ == "__main__":` block
runs as it would in its own process, with its exit code and its printout captured, so a test of a
one-line error or an exit code checks the same lines. Each script keeps one real subprocess test."""

import contextlib
import io
import os
import runpy
import subprocess
import sys
import traceback


def run_script(script, *args, cwd=None):
    """Run ``script`` with ``args`` as its __main__, in ``cwd``; returns what subprocess.run(...,
    capture_output=True, text=True) would: returncode, stdout, stderr. An exception that escapes the
    script is printed as the interpreter prints it (a traceback) and exits 1, as it would there."""
    argv = [str(a) for a in args]
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_argv, saved_cwd = sys.argv, os.getcwd()
    sys.argv = [script, *argv]
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                runpy.run_path(script, run_name="__main__")
                returncode = 0
            except SystemExit as e:  # sys.exit(...) and argparse's errors: the interpreter's rules for the exit code
                if e.code is None or isinstance(e.code, int):
                    returncode = e.code or 0
                else:
                    print(e.code, file=sys.stderr)
                    returncode = 1
            except Exception:
                traceback.print_exc()
                returncode = 1
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
    return subprocess.CompletedProcess([sys.executable, script, *argv], returncode, stdout.getvalue(), stderr.getvalue())
