"""Writing and reading the model files (reward model, agent): atomically, and safely.

Shared by reward_model.py and agent.py, which add their own format checks and messages.
"""

from __future__ import annotations

import os
import uuid

import torch


def save_atomic(checkpoint: dict, path: str) -> None:
    """``torch.save`` under a temporary name in the same folder, then an atomic rename: a crash
    never leaves half a file where a good one was. Creates the folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_safely(path: str):
    """``torch.load(weights_only=True)`` on the CPU; any failure (truncated, corrupt, foreign
    pickle) becomes a ``ValueError`` whose message is the first line of the reason."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from None
