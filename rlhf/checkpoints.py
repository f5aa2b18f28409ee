"""Writing and reading files atomically, and safely: the model files (reward model, agent) and
the JSON records of the loop (rlhf_loop.py) and the experiment runner (run_experiments.py).

Shared by reward_model.py and agent.py, which add their own format checks and messages, and by
the two scripts whose records must survive a crash.
"""

from __future__ import annotations

import json
import os
import uuid


def _replace_atomically(path: str, write) -> None:
    """``write(tmp)`` under a temporary name in the same folder, then an atomic rename: a crash
    never leaves half a file where a good one was. Creates the folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_atomic(checkpoint: dict, path: str) -> None:
    """``torch.save`` of a model file, atomically (_replace_atomically)."""
    import torch  # the JSON records' scripts never import torch

    _replace_atomically(path, lambda tmp: torch.save(checkpoint, tmp))


def write_json(path: str, data, indent: int = 1) -> None:
    """Replace ``path`` by ``data`` as JSON atomically and durably (flushed to the disk before the
    rename): a crash or a reboot leaves the old file or the new one, never half of one."""

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=indent)
            f.flush()
            os.fsync(f.fileno())

    _replace_atomically(path, write)


def load_safely(path: str):
    """``torch.load(weights_only=True)`` on the CPU; any failure (truncated, corrupt, foreign
    pickle) becomes a ``ValueError`` whose message is the first line of the reason."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from None
