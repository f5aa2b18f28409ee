"""The modules the stage scripts share: the preferences DB (db), the reward model (reward_model),
PPO's agent (agent), the moving-dot env (moving_dot) and the other envs (envs), exact scoring on the
dot's grid (value_iteration), a flat Adam (adam), flag checks (cli) and model-file I/O (checkpoints).
They never parse flags of their own and never print; the scripts at the repo root use them."""
