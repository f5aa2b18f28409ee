"""The original write-up's pipeline in reference mode: its three stages' workload, reproduced.

    python benchmarks/writeup_reference.py generate --seed 1 --db preferences.db
    python benchmarks/writeup_reference.py reward --seed 1 --db preferences.db --out rewards_model
    python benchmarks/writeup_reference.py ppo --seed 1 --rlhf rewards_model --total-timesteps 1000000

This is NOT the write-up's code. benchmarks/versus_writeup.py runs that code itself (in a
scratch environment it builds) and falls back to this reproduction where the code or its
environment cannot be had, or with --reference-mode: the same computation as the write-up
describes it, with the same per-step work and the same inefficiencies, written afresh before
the code could be reached. Where the write-up does not say, the choice made is the plain one
and is marked "guess" below. What the code turned out to do differently (versus_writeup.py
--validate; figures in docs/performance.md): its reward stage also makes a validation DB and
runs five checkpoint histograms over both tables (one network call per row, seconds each), left
out here; its train.py is CleanRL's ppo.py less GAE, the entropy bonus and value clipping, on
gymnasium 0.29's same-step autoreset and the 1000-step episodes of gym_moving_dot.

- `generate`: the write-up's make_preferences_db.py. 10,000 single-step segments (a random
  position and action) drawn one at a time in a Python loop with `np.random.randint`, 10,000
  comparisons of pairs drawn with `random.sample`, each labelled by the distance heuristic
  (mu = 1/0 if segment 1's action closed more distance to the centre, 0/1 if segment 2's,
  0.5/0.5 on a tie), then one SQLite INSERT per row with plain sqlite3 (9 columns: index, the
  two segments' position and action, mu1, mu2), committed once (guess: the write-up's db.py is
  "standard SQL queries"; one commit per row would be far slower and is not assumed).
- `reward`: the write-up's reward model training. An MLP from the raw (position, action) as 3
  floats, 64-64 Tanh, orthogonal init (sqrt 2 hidden, 1.0 output, zero biases), Adam lr 2.5e-4,
  eps 1e-5, a fixed 100,000 steps; each step draws 128 rows without replacement with
  `np.random.choice`, builds the tensors from that numpy batch, evaluates the loss as the
  write-up writes it (exp, e1 / (e1 + e2), log, summed over the batch) and steps Adam. Torch's
  thread count is left at its default, as the write-up never sets it. Saves the state_dict.
  Not reproduced: the write-up's periodic histograms of R1 - R2 over the whole table (their
  interval is not given; guess: they cost little next to 100,000 steps).
- `ppo`: CleanRL's ppo.py (the 2023 gymnasium version) with its defaults, which the write-up
  started from: 4 envs x 128 steps, lr 2.5e-4 annealed linearly, gamma 0.99, GAE lambda 0.95,
  4 minibatches x 4 epochs, clip 0.2, clipped value loss, normalized advantages, entropy 0.01,
  value 0.5, max grad norm 0.5, separate actor and critic 64-64 Tanh MLPs, TensorBoard logging
  as CleanRL does (SPS and losses every update, every episode's return and length, printed
  too). The env is a pure-Python gymnasium env stepped one at a time in a SyncVectorEnv, each
  wrapped in RecordEpisodeStatistics. With `--rlhf MODEL`, after every vector step a Python
  loop over the envs builds one [position, action] tensor per env from the observation the
  step returned, calls the reward network (outside `torch.no_grad`, as in the write-up), clamps
  to [-1, 1] and writes it into the reward array.

Gymnasium 1.x steps vector envs in next-step autoreset mode: the step after an episode ends
returns the next episode's first observation, ignores the action and pays 0. Those steps are
left out of the PPO loss (CleanRL's 0.29 code had same-step autoreset and no such steps), and
episode statistics are read from `info["episode"]` under its `_episode` mask. A consequence
for `--rlhf`: on the step that truncates an episode the returned observation is the episode's
last one, where under 0.29 it was the next episode's first.

The write-up's geometry: positions (4, 4) to (205, 155), centre (105, 80). Its generator calls
the first coordinate y (4..205) and the second x (4..155); moving_dot.py calls them x and y. The
coordinates, bounds, centre and action moves here are the same as moving_dot.py's, so the
reward network sees in the env what it was trained on.

`generate` never imports torch (the write-up's generator is its own script, and a process's
start-up is part of what versus_writeup.py times), so torch is imported inside the stages that
use it. Each stage ends by printing one line, `timing: {...}`, with its main loop's step count,
wall and CPU seconds, which versus_writeup.py uses to scale a shortened run.
"""

import argparse
import json
import os
import random
import sqlite3
import sys
import time

import gymnasium as gym
import numpy as np

N_ACTIONS = 5
MOVES = ((0, 0), (0, 1), (1, 0), (0, -1), (-1, 0))  # stay, then +1 / -1 along each coordinate
LOW = np.array([4, 4])  # the write-up's (y_min, x_min)
HIGH = np.array([205, 155])  # the write-up's (y_max, x_max)
CENTRE = np.array([105, 80])  # the write-up's mid_point
EPISODE_STEPS = 2000
ENV_ID = "WriteupMovingDot-v0"
TABLE = "preferences"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="The original write-up's three stages, reproduced as a workload (reference mode).")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="segments, comparisons by the distance heuristic, SQLite rows")
    g.add_argument("--seed", type=int, default=1, help="seed of numpy's and random's global generators")
    g.add_argument("--db", default="preferences.db", help="SQLite file to create (must not exist)")
    g.add_argument("--n-segments", type=int, default=10000, help="segments (write-up: 10000)")
    g.add_argument("--n-comparisons", type=int, default=10000, help="comparisons (write-up: 10000)")

    r = sub.add_parser("reward", help="the write-up's reward model training, a fixed number of steps")
    r.add_argument("--seed", type=int, default=1, help="seed of torch's init and numpy's batch draws")
    r.add_argument("--db", default="preferences.db", help="SQLite file written by generate")
    r.add_argument("--out", default="rewards_model", help="state_dict file to write (write-up: rewards_model)")
    r.add_argument("--steps", type=int, default=100000, help="gradient steps (write-up: 100000)")
    r.add_argument("--batch-size", type=int, default=128, help="rows per step (write-up: 128)")
    r.add_argument("--progress", action="store_true", help="show a tqdm bar")

    q = sub.add_parser("ppo", help="CleanRL's ppo.py on a pure-Python env, optionally on the learned reward")
    q.add_argument("--seed", type=int, default=1, help="seed of random, numpy, torch and the envs (CleanRL: 1)")
    q.add_argument("--rlhf", default=None, metavar="MODEL", help="replace the env reward by this reward model's (a reward stage state_dict)")
    q.add_argument("--run-dir", default="runs", help="parent folder of the TensorBoard run (CleanRL: runs)")
    q.add_argument("--total-timesteps", type=int, default=1000000, help="env steps (write-up: 1000000)")
    q.add_argument("--learning-rate", type=float, default=2.5e-4, help="CleanRL: 2.5e-4")
    q.add_argument("--num-envs", type=int, default=4, help="CleanRL: 4")
    q.add_argument("--num-steps", type=int, default=128, help="CleanRL: 128")
    q.add_argument("--anneal-lr", action=argparse.BooleanOptionalAction, default=True, help="CleanRL: on")
    q.add_argument("--gamma", type=float, default=0.99, help="CleanRL: 0.99")
    q.add_argument("--gae-lambda", type=float, default=0.95, help="CleanRL: 0.95")
    q.add_argument("--num-minibatches", type=int, default=4, help="CleanRL: 4")
    q.add_argument("--update-epochs", type=int, default=4, help="CleanRL: 4")
    q.add_argument("--norm-adv", action=argparse.BooleanOptionalAction, default=True, help="CleanRL: on")
    q.add_argument("--clip-coef", type=float, default=0.2, help="CleanRL: 0.2")
    q.add_argument("--clip-vloss", action=argparse.BooleanOptionalAction, default=True, help="CleanRL: on")
    q.add_argument("--ent-coef", type=float, default=0.01, help="CleanRL: 0.01")
    q.add_argument("--vf-coef", type=float, default=0.5, help="CleanRL: 0.5")
    q.add_argument("--max-grad-norm", type=float, default=0.5, help="CleanRL: 0.5")
    q.add_argument("--target-kl", type=float, default=None, help="CleanRL: none")

    args = p.parse_args(argv)
    if args.command == "generate" and (args.n_segments < 2 or args.n_comparisons < 1):
        p.error("generate needs --n-segments >= 2 and --n-comparisons >= 1")
    if args.command == "reward" and (args.steps < 1 or args.batch_size < 1):
        p.error("reward needs --steps >= 1 and --batch-size >= 1")
    if args.command == "ppo":
        args.batch_size = args.num_envs * args.num_steps
        args.minibatch_size = args.batch_size // args.num_minibatches
        args.num_iterations = args.total_timesteps // args.batch_size
        if args.num_iterations < 1:
            p.error(f"--total-timesteps must be at least --num-envs x --num-steps ({args.batch_size})")
    return args


def print_timing(steps, wall_start, cpu_start):
    """The line versus_writeup.py reads: the main loop's steps, wall and CPU seconds."""
    timing = {"steps": steps, "loop_wall_s": time.perf_counter() - wall_start, "loop_cpu_s": time.process_time() - cpu_start}
    print("timing: " + json.dumps(timing), flush=True)
    return timing


# --- generate ---------------------------------------------------------------------------------

def distance_closed(obs, action):
    """How much closer to the centre the action brings the dot (the write-up's move_1, move_2)."""
    next_obs = obs + np.array(MOVES[action])
    return np.sqrt(np.sum((obs - CENTRE) ** 2)) - np.sqrt(np.sum((next_obs - CENTRE) ** 2))


def preference(move1, move2):
    """The write-up's heuristic: mu = (1, 0) if segment 1 closed more distance, (0, 1) if segment 2 did, else a tie."""
    if move1 > move2:
        return 1.0, 0.0
    if move2 > move1:
        return 0.0, 1.0
    return 0.5, 0.5


def generate(args):
    if os.path.exists(args.db):
        sys.exit(f"writeup_reference.py generate: {args.db} already exists; remove it or choose another --db")
    np.random.seed(args.seed)
    random.seed(args.seed)
    wall_start, cpu_start = time.perf_counter(), time.process_time()

    # segments: one random position and action at a time
    segments = []
    for _ in range(args.n_segments):
        obs = np.array([np.random.randint(LOW[0], HIGH[0] + 1), np.random.randint(LOW[1], HIGH[1] + 1)])
        segments.append((obs, np.random.randint(0, N_ACTIONS)))

    # comparisons: uniform random pairs, labelled by the distance heuristic
    comparisons = []
    for _ in range(args.n_comparisons):
        (obs1, action1), (obs2, action2) = random.sample(segments, 2)
        mu1, mu2 = preference(distance_closed(obs1, action1), distance_closed(obs2, action2))
        comparisons.append([len(comparisons), int(obs1[0]), int(obs1[1]), int(action1), int(obs2[0]), int(obs2[1]), int(action2), mu1, mu2])

    # store: plain sqlite3, one INSERT per row
    connection = sqlite3.connect(args.db)
    connection.execute(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, obs1_0 INTEGER, obs1_1 INTEGER, action1 INTEGER,"
                       " obs2_0 INTEGER, obs2_1 INTEGER, action2 INTEGER, mu1 REAL, mu2 REAL)")
    for row in comparisons:
        connection.execute(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
    connection.commit()
    connection.close()
    print(f"wrote {len(comparisons)} comparisons of {len(segments)} segments to {args.db}")
    print_timing(args.n_comparisons, wall_start, cpu_start)


# --- reward -----------------------------------------------------------------------------------

def mlp(n_inputs, n_outputs, output_std):
    """The write-up's (and CleanRL's) network: 64-64 Tanh, orthogonal weights (sqrt 2 in the
    hidden layers, output_std in the last), zero biases."""
    import torch

    def layer(n_in, n_out, std=np.sqrt(2)):
        linear = torch.nn.Linear(n_in, n_out)
        torch.nn.init.orthogonal_(linear.weight, std)
        torch.nn.init.constant_(linear.bias, 0.0)
        return linear

    return torch.nn.Sequential(layer(n_inputs, 64), torch.nn.Tanh(), layer(64, 64), torch.nn.Tanh(), layer(64, n_outputs, output_std))


def preference_loss(network, segment1, segment2, mu1, mu2):
    """The write-up's loss, term by term: P1 = e1 / (e1 + e2), -(mu1 log P1 + mu2 log P2), per row."""
    import torch

    e1 = torch.exp(network(segment1).squeeze(1))
    e2 = torch.exp(network(segment2).squeeze(1))
    p1, p2 = e1 / (e1 + e2), e2 / (e1 + e2)
    return -(mu1 * torch.log(p1) + mu2 * torch.log(p2))


def load_table(path):
    """Every row of the preferences table as a float array (n, 9)."""
    connection = sqlite3.connect(path)
    rows = connection.execute(f"SELECT * FROM {TABLE}").fetchall()
    connection.close()
    return np.array(rows, dtype=float)


def reward(args):
    import torch
    from tqdm import tqdm

    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    preference_table = load_table(args.db)
    if len(preference_table) < args.batch_size:
        sys.exit(f"writeup_reference.py reward: {args.db} has {len(preference_table)} rows, fewer than --batch-size {args.batch_size}")
    network = mlp(2 + 1, 1, 1.0).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=2.5e-4, eps=1e-5)

    # train: a fixed number of steps, a fresh numpy batch and fresh tensors each step
    losses = []
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    for _ in tqdm(range(args.steps), desc="reward", disable=not args.progress, mininterval=0.5):
        batch = preference_table[np.random.choice(len(preference_table), args.batch_size, False)]
        segment1 = torch.tensor(batch[:, 1:4], dtype=torch.float).to(device)
        segment2 = torch.tensor(batch[:, 4:7], dtype=torch.float).to(device)
        mu1 = torch.tensor(batch[:, 7], dtype=torch.float).to(device)
        mu2 = torch.tensor(batch[:, 8], dtype=torch.float).to(device)
        loss = preference_loss(network, segment1, segment2, mu1, mu2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())  # the write-up plots the training loss's moving average
    timing = print_timing(args.steps, wall_start, cpu_start)

    torch.save(network.state_dict(), args.out)
    window = min(100, len(losses))
    print(f"trained {args.steps} steps on {len(preference_table)} comparisons in {timing['loop_wall_s']:.1f} s; loss per batch,"
          f" mean of the first and last {window} steps: {np.mean(losses[:window]):.2f} -> {np.mean(losses[-window:]):.2f}; wrote {args.out}")
    return losses


# --- ppo --------------------------------------------------------------------------------------

class MovingDotEnv(gym.Env):
    """The write-up's moving dot in pure Python: the position as 2 floats, 5 actions, +1 / -1 / 0
    as the distance to the centre falls / rises / stays, a random start. Time limit: registration."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(LOW.astype(np.float32), HIGH.astype(np.float32), shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(N_ACTIONS)
        self.position = LOW.copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = np.array([self.np_random.integers(LOW[0], HIGH[0] + 1), self.np_random.integers(LOW[1], HIGH[1] + 1)])
        return self.position.astype(np.float32), {}

    def step(self, action):
        before = np.linalg.norm(self.position - CENTRE)
        self.position = np.clip(self.position + MOVES[int(action)], LOW, HIGH)
        after = np.linalg.norm(self.position - CENTRE)
        reward = 1.0 if after < before else -1.0 if after > before else 0.0
        return self.position.astype(np.float32), reward, False, False, {}


gym.register(id=ENV_ID, entry_point=MovingDotEnv, max_episode_steps=EPISODE_STEPS)


def make_env(env_id):
    def thunk():
        return gym.wrappers.RecordEpisodeStatistics(gym.make(env_id))

    return thunk


def ppo(args):
    import torch
    from torch.distributions.categorical import Categorical
    from torch.utils.tensorboard import SummaryWriter

    run_name = f"{ENV_ID}__writeup_reference__{args.seed}__{int(time.time())}"
    writer = SummaryWriter(os.path.join(args.run_dir, run_name))
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in vars(args).items()))
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = True
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    envs = gym.vector.SyncVectorEnv([make_env(ENV_ID) for _ in range(args.num_envs)])
    n_obs = int(np.prod(envs.single_observation_space.shape))
    critic = mlp(n_obs, 1, 1.0).to(device)
    actor = mlp(n_obs, envs.single_action_space.n, 0.01).to(device)
    params = list(critic.parameters()) + list(actor.parameters())
    optimizer = torch.optim.Adam(params, lr=args.learning_rate, eps=1e-5)

    def get_action_and_value(x, action=None):
        probs = Categorical(logits=actor(x))
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), critic(x)

    reward_network = None
    if args.rlhf:  # the write-up: load the state_dict, eval mode, never updated
        reward_network = mlp(2 + 1, 1, 1.0).to(device)
        reward_network.load_state_dict(torch.load(args.rlhf))
        reward_network.eval()

    obs = torch.zeros((args.num_steps, args.num_envs) + envs.single_observation_space.shape).to(device)
    actions = torch.zeros((args.num_steps, args.num_envs) + envs.single_action_space.shape).to(device)
    logprobs = torch.zeros((args.num_steps, args.num_envs)).to(device)
    rewards = torch.zeros((args.num_steps, args.num_envs)).to(device)
    dones = torch.zeros((args.num_steps, args.num_envs)).to(device)
    values = torch.zeros((args.num_steps, args.num_envs)).to(device)

    global_step = 0
    start_time = time.time()
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    next_obs, _ = envs.reset(seed=args.seed)
    next_obs = torch.Tensor(next_obs).to(device)
    next_done = torch.zeros(args.num_envs).to(device)
    for iteration in range(1, args.num_iterations + 1):
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / args.num_iterations) * args.learning_rate

        # collect
        for step in range(args.num_steps):
            global_step += args.num_envs
            obs[step] = next_obs
            dones[step] = next_done  # 1: the previous step ended an episode, so this one is 1.x's autoreset step
            with torch.no_grad():
                action, logprob, _, value = get_action_and_value(next_obs)
                values[step] = value.flatten()
            actions[step] = action
            logprobs[step] = logprob

            next_obs, reward, terminations, truncations, infos = envs.step(action.cpu().numpy())
            next_done = np.logical_or(terminations, truncations)
            if reward_network is not None:  # the write-up's per-env loop, one network call per env and step
                for i in range(len(reward)):
                    reward_input = torch.tensor([next_obs[i][0], next_obs[i][1], action[i]], dtype=torch.float).to(device)
                    reward[i] = torch.clamp(reward_network(reward_input), -1, 1)
            rewards[step] = torch.tensor(reward).to(device).view(-1)
            next_obs, next_done = torch.Tensor(next_obs).to(device), torch.Tensor(next_done).to(device)

            if "episode" in infos:
                for i in np.flatnonzero(infos["_episode"]):
                    print(f"global_step={global_step}, episodic_return={infos['episode']['r'][i]}")
                    writer.add_scalar("charts/episodic_return", infos["episode"]["r"][i], global_step)
                    writer.add_scalar("charts/episodic_length", infos["episode"]["l"][i], global_step)

        # advantages: CleanRL's GAE; an episode's end cuts it (CleanRL treats truncation as termination)
        with torch.no_grad():
            next_value = critic(next_obs).reshape(1, -1)
            advantages = torch.zeros_like(rewards).to(device)
            lastgaelam = 0
            for t in reversed(range(args.num_steps)):
                if t == args.num_steps - 1:
                    nextnonterminal = 1.0 - next_done
                    nextvalues = next_value
                else:
                    nextnonterminal = 1.0 - dones[t + 1]
                    nextvalues = values[t + 1]
                delta = rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]
                advantages[t] = lastgaelam = delta + args.gamma * args.gae_lambda * nextnonterminal * lastgaelam
            returns = advantages + values

        # update: CleanRL's, over the steps that are real transitions (not 1.x's autoreset steps)
        b_obs = obs.reshape((-1,) + envs.single_observation_space.shape)
        b_logprobs = logprobs.reshape(-1)
        b_actions = actions.reshape((-1,) + envs.single_action_space.shape)
        b_advantages = advantages.reshape(-1)
        b_returns = returns.reshape(-1)
        b_values = values.reshape(-1)
        b_inds = np.flatnonzero(dones.reshape(-1).cpu().numpy() == 0)
        clipfracs = []
        for _epoch in range(args.update_epochs):
            np.random.shuffle(b_inds)
            for start in range(0, len(b_inds), args.minibatch_size):
                mb_inds = b_inds[start:start + args.minibatch_size]
                _, newlogprob, entropy, newvalue = get_action_and_value(b_obs[mb_inds], b_actions.long()[mb_inds])
                logratio = newlogprob - b_logprobs[mb_inds]
                ratio = logratio.exp()
                with torch.no_grad():
                    old_approx_kl = (-logratio).mean()
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs += [((ratio - 1.0).abs() > args.clip_coef).float().mean().item()]
                mb_advantages = b_advantages[mb_inds]
                if args.norm_adv:
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
                pg_loss1 = -mb_advantages * ratio
                pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()
                newvalue = newvalue.view(-1)
                if args.clip_vloss:
                    v_loss_unclipped = (newvalue - b_returns[mb_inds]) ** 2
                    v_clipped = b_values[mb_inds] + torch.clamp(newvalue - b_values[mb_inds], -args.clip_coef, args.clip_coef)
                    v_loss_clipped = (v_clipped - b_returns[mb_inds]) ** 2
                    v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
                else:
                    v_loss = 0.5 * ((newvalue - b_returns[mb_inds]) ** 2).mean()
                entropy_loss = entropy.mean()
                loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
                optimizer.step()
            if args.target_kl is not None and approx_kl > args.target_kl:
                break

        # log: CleanRL's tags, every update
        valid = b_inds  # the same steps, shuffled; variance does not care
        y_pred, y_true = b_values[valid].cpu().numpy(), b_returns[valid].cpu().numpy()
        var_y = np.var(y_true)
        explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y
        writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
        writer.add_scalar("losses/value_loss", v_loss.item(), global_step)
        writer.add_scalar("losses/policy_loss", pg_loss.item(), global_step)
        writer.add_scalar("losses/entropy", entropy_loss.item(), global_step)
        writer.add_scalar("losses/old_approx_kl", old_approx_kl.item(), global_step)
        writer.add_scalar("losses/approx_kl", approx_kl.item(), global_step)
        writer.add_scalar("losses/clipfrac", np.mean(clipfracs), global_step)
        writer.add_scalar("losses/explained_variance", explained_var, global_step)
        sps = int(global_step / (time.time() - start_time))
        print("SPS:", sps)
        writer.add_scalar("charts/SPS", sps, global_step)
    timing = print_timing(global_step, wall_start, cpu_start)
    envs.close()
    writer.close()
    print(f"{'rlhf (' + args.rlhf + ')' if args.rlhf else 'env reward'}: {global_step} steps in {timing['loop_wall_s']:.1f} s")
    return timing


def main(args):
    return {"generate": generate, "reward": reward, "ppo": ppo}[args.command](args)


if __name__ == "__main__":
    main(parse_args())
