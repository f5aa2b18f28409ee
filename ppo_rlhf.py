"""Stage 3: train a PPO agent, on the env reward or on the learned one.

    python ppo_rlhf.py --rlhf --reward-model reward_model.pt
    python ppo_rlhf.py --preset fast --rlhf          # the fastest route to a good agent on the moving dot (docs/results.md)
    python ppo_rlhf.py --env-id MountainCar-v0 --rlhf --reward-model mountain_car_rm.pt

A single-file PPO in the style of CleanRL's ppo.py (a categorical policy for Discrete actions) and
ppo_continuous_action.py (a Gaussian policy for Box actions, with observation and reward
normalization, --norm-obs and --norm-reward), on the moving dot's native vectorized env or
gymnasium's SyncVectorEnv (envs.py). With --rlhf the env reward is replaced by the reward model's
r(o_t, a_t, o_t+1), with o_t+1 the observation the action led to (the last one of an episode where
it ended). An episode that terminates enters the absorbing state the reward model was trained on
(db.py): its learned reward (one number, the reward model's absorbing-state input) is paid for ever
after, gamma-discounted, which is what makes the normalized learned reward's shift harmless. The true env return is still what
`charts/episodic_return` reports. Writes TensorBoard logs and the agent file under runs/<run
name>/, and ends by evaluating the greedy and the sampled policy on fixed starts.
"""

import argparse
import gc
import os
import sys
import time

import numpy as np
import threadpoolctl
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from rlhf import adam, cli, ppo_loss
from rlhf import agent as agent_lib
from rlhf import envs as env_lib
from rlhf import moving_dot as md
from rlhf import reward_model as rm

# "fast": the least wall time to an agent whose greedy and sampled policies both reach the centre
# on every seed of experiments/robustness.py --quick; the figures are in docs/results.md, "Time to a good agent".
PRESETS = {
    "cleanrl": {},
    "fast": {"num_envs": 16, "num_steps": 64, "total_timesteps": 150_000, "learning_rate": 1e-3,
             "num_minibatches": 2, "update_epochs": 2},
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="PPO on the env reward or (--rlhf) the learned reward.")
    p.add_argument("--seed", type=int, default=1, help="seed of the envs, the init and the sampling")
    p.add_argument("--reward-model", default="reward_model.pt", help="the reward model file used with --rlhf")
    p.add_argument("--save-path", default=None, help="agent file to write (default: runs/<run name>/agent.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --save-path")
    p.add_argument("--resume", default=None, help="continue training a saved agent: its weights, optimizer state and step count")
    p.add_argument("--run-dir", default="runs", help="parent folder of the TensorBoard run")
    p.add_argument("--exp-name", default="ppo_rlhf", help="the experiment's name in the run name")
    p.add_argument("--env-id", default=env_lib.DEFAULT_ENV_ID, help="the gymnasium env (envs.py: supported envs, your own as module:Env-v0)")
    p.add_argument("--preset", choices=tuple(PRESETS), default="cleanrl", help="a named set of defaults (flags given still win)")
    p.add_argument("--rlhf", action="store_true", help="replace the env reward by the learned reward")
    p.add_argument("--reward-transform", choices=rm.TRANSFORMS, default=rm.TRANSFORMS[0],
                   help="learned reward: normalize to zero mean, unit std over the grid (C17) or clip to [-1, 1] (write-up; it ties actions)")
    p.add_argument("--total-timesteps", type=cli.positive_int, default=1_000_000, help="env steps in all (write-up: 1000000)")
    p.add_argument("--learning-rate", type=cli.positive_float, default=2.5e-4, help="Adam step size (CleanRL: 2.5e-4)")
    p.add_argument("--num-envs", type=cli.positive_int, default=4, help="parallel envs (CleanRL: 4)")
    p.add_argument("--num-steps", type=cli.positive_int, default=128, help="steps per env per rollout (CleanRL: 128)")
    p.add_argument("--anneal-lr", action=argparse.BooleanOptionalAction, default=True, help="anneal the learning rate linearly to 0")
    p.add_argument("--gamma", type=cli.discount, default=0.99, help="discount (CleanRL: 0.99)")
    p.add_argument("--gae-lambda", type=cli.probability, default=0.95, help="GAE lambda (CleanRL: 0.95)")
    p.add_argument("--num-minibatches", type=cli.positive_int, default=4, help="minibatches per epoch (CleanRL: 4)")
    p.add_argument("--update-epochs", type=cli.positive_int, default=4, help="epochs per update (CleanRL: 4)")
    p.add_argument("--norm-adv", action=argparse.BooleanOptionalAction, default=True, help="normalize advantages per minibatch")
    p.add_argument("--clip-coef", type=cli.positive_float, default=0.2, help="surrogate clipping (CleanRL: 0.2)")
    p.add_argument("--clip-vloss", action=argparse.BooleanOptionalAction, default=True, help="clip the value loss (CleanRL: on)")
    p.add_argument("--ent-coef", type=cli.nonnegative_float, default=0.01, help="entropy bonus (CleanRL: 0.01)")
    p.add_argument("--vf-coef", type=cli.nonnegative_float, default=0.5, help="value loss weight (CleanRL: 0.5)")
    p.add_argument("--max-grad-norm", type=cli.positive_float, default=0.5, help="gradient clipping (CleanRL: 0.5)")
    p.add_argument("--target-kl", type=cli.positive_float, default=None, help="stop an update early past this KL (default: never)")
    p.add_argument("--norm-obs", action=argparse.BooleanOptionalAction, default=False,
                   help="scale observations by running statistics, clipped to +-10 (CleanRL's continuous PPO); off: by the space's bounds")
    p.add_argument("--norm-reward", action=argparse.BooleanOptionalAction, default=False,
                   help="divide rewards by the running std of the discounted return, clipped to +-10 (CleanRL's continuous PPO)")
    p.add_argument("--eval-episodes", type=cli.positive_int, default=100, help="fixed-start episodes of the final evaluation")
    p.add_argument("--eval-seed", type=int, default=100_000, help="env seed of the first evaluation episode (same for every run)")
    p.add_argument("--capture-video", action="store_true", help="write a GIF of the trained greedy agent into the run folder")
    p.add_argument("--autograd", action="store_true",
                   help="the update's gradient by torch autograd (rlhf/ppo_loss.py's autograd_loss: edit it to try a new loss), not by hand in numpy; always with CUDA")
    p.add_argument("--cuda", action=argparse.BooleanOptionalAction, default=True, help="use CUDA when available")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar")
    args_spec = cli.env_spec_with_defaults(p, argv, "ppo_rlhf", continuous_defaults=True)
    p.set_defaults(**PRESETS[p.parse_known_args(argv)[0].preset])
    args = p.parse_args(argv)
    args.spec = args_spec
    args.batch_size = args.num_envs * args.num_steps
    if args.batch_size % args.num_minibatches:
        p.error(f"--num-envs x --num-steps ({args.batch_size}) must be divisible by --num-minibatches ({args.num_minibatches})")
    args.minibatch_size = args.batch_size // args.num_minibatches
    args.num_iterations = max(1, args.total_timesteps // args.batch_size)
    return args


def episode_sums(values, dones, carry):
    """Per-episode sums of ``values`` (T, N) for the episodes that end in this rollout (where
    ``dones``), continuing the open sums ``carry`` (N,). Returns (sums, t, env, new carry),
    the ended episodes ordered by env, then time."""
    running = np.cumsum(values, 0)
    env, t = np.nonzero(dones.T)
    ends = running[t, env]
    same_env_before = np.r_[False, env[1:] == env[:-1]]
    starts = np.where(same_env_before, np.r_[0.0, ends[:-1]], -carry[env])
    last_done = np.full(dones.shape[1], -1)
    last_done[env] = t  # the latest done of each env wins
    new_carry = np.where(last_done >= 0, running[-1] - running[last_done, np.arange(dones.shape[1])], carry + running[-1])
    return ends - starts, t, env, new_carry


def gae(rewards, values, dones, next_value, gamma, lam):
    """Generalized advantage estimates (T, N) of one rollout; ``dones[t]`` cuts the recursion
    after step t, ``next_value`` is V of the observation after the rollout."""
    not_done = 1.0 - dones
    deltas = rewards + gamma * np.concatenate([values[1:], next_value[None]]) * not_done - values
    advantages = np.zeros_like(values)
    last_gae = np.zeros_like(next_value)
    for t in reversed(range(len(values))):
        last_gae = advantages[t] = deltas[t] + gamma * lam * not_done[t] * last_gae
    return advantages


def clip_grad_norm(grad, max_norm):
    """torch.nn.utils.clip_grad_norm_ on the optimizer's flat gradient buffer, in three kernels:
    it runs on every minibatch."""
    grad.mul_(torch.clamp(max_norm / (torch.linalg.vector_norm(grad) + 1e-6), max=1.0))


def discounted_return_std(rewards, dones, carry, stats, gamma):
    """CleanRL's NormalizeReward, once per rollout: the running discounted return of each env
    (``carry`` (N,), continued across rollouts) folded into running (count, mean, var) ``stats``;
    returns the std to divide rewards by and the new carry."""
    returns = np.empty_like(rewards, dtype=np.float64)
    for t in range(len(rewards)):  # a loop over time; the envs move together
        carry = carry * gamma + rewards[t]
        returns[t] = carry
        carry = np.where(dones[t], 0.0, carry)
    count, mean, var = stats
    n, batch_mean, batch_var = returns.size, returns.mean(), returns.var()
    total = count + n
    delta = batch_mean - mean
    stats[:] = total, mean + delta * n / total, (var * count + batch_var * n + delta ** 2 * count * n / total) / total
    return float(np.sqrt(stats[2] + 1e-8)), carry


def capture_episode(path, agent, env_spec, seed):
    """A GIF of one greedy episode, from the env's own rgb_array frames (every other frame)."""
    from PIL import Image

    env = env_lib.make_render_env(env_spec)
    obs, _ = env.reset(seed=seed)
    policy, frames, done = agent.numpy_policy(), [], False
    while not done:
        frames.append(Image.fromarray(env.render()))
        out = policy(np.asarray(obs, np.float32)[None])[0][0]
        action = int(out.argmax()) if agent.discrete else np.clip(out, env_spec.action_low, env_spec.action_high).astype(np.float32)
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    env.close()
    frames = frames[::2]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40, loop=0)


def make_gif(path, positions, every=2):
    """An animated GIF of the field from a sequence of positions, the centre marked in grey."""
    from PIL import Image

    reached = np.flatnonzero((positions == md.CENTRE).all(1))
    # 40 steps past the centre; an agent that never lands on it shows its longest possible way there and 40 more
    end = min(len(positions), (reached[0] if len(reached) else int(md.MANHATTAN.max())) + 40)
    frames = []
    for position in positions[:end:every]:
        frame = md.render_frame(position)
        cx, cy = md.CENTRE
        frame[cy, cx - 6:cx + 7] = np.maximum(frame[cy, cx - 6:cx + 7], 90)
        frame[cy - 6:cy + 7, cx] = np.maximum(frame[cy - 6:cy + 7, cx], 90)
        frames.append(Image.fromarray(frame).resize((md.WIDTH * 2, md.HEIGHT * 2), Image.NEAREST))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40, loop=0)


def main(args):
    start_time = time.time()
    env_spec = args.spec
    if args.save_path:
        agent_lib.refuse_existing(args.save_path, args.overwrite)  # fail before training, not after
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # 64-unit MLPs on a few hundred rows: threads only add overhead
    threadpoolctl.threadpool_limits(1, "blas")  # numpy's BLAS too: it runs the update's matmuls, and would take every core
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    learned_table, reward_model = None, None
    if args.rlhf:  # a bad file fails here, before any work
        reward_model = rm.load(args.reward_model, device, env_spec=env_spec)
        if env_spec.tabular:  # the moving dot: the learned reward as PPO uses it, for every (o, a) of the grid
            table = rm.reward_table(reward_model)
            learned_table = rm.transform_rewards(table, args.reward_transform, table)
        elif args.reward_transform == "normalize" and reward_model.reward_stats is None:
            raise rm.RewardModelError(f"{args.reward_model} holds no reward statistics to normalize with; retrain it, or pass --reward-transform clip")
    stats = reward_model.normalization() if reward_model is not None else None  # the absorbing state pays 0 where the model has it

    def learned_reward(o, a, o_next, absorbing=False, terminal=None):  # off the grid: one batched call of the model for a whole rollout
        r = reward_model.reward(o.reshape(-1, o.shape[-1]), a.reshape(-1, *a.shape[2:]), o_next.reshape(-1, o.shape[-1]),
                                np.full(o.shape[0] * o.shape[1], absorbing), None if terminal is None else terminal.reshape(-1))
        return rm.transform_rewards(r, args.reward_transform, stats).reshape(a.shape[:2]).astype(np.float32)

    if args.resume:  # C17's loop trains the same agent further each round, on the latest reward model
        agent, checkpoint = agent_lib.load(args.resume, device, env_spec=env_spec)
        agent.train()
    else:
        agent, checkpoint = agent_lib.for_env(env_spec, norm_obs=args.norm_obs).to(device), {}
    optimizer = adam.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    use_numpy = device.type == "cpu" and not args.autograd
    numpy_loss = ppo_loss.NumpyLoss(agent, optimizer) if use_numpy else None
    if checkpoint.get("optimizer"):  # Adam's moments carry over; the step size is this run's
        optimizer.load_state_dict(checkpoint["optimizer"])
        optimizer.lr = args.learning_rate
    start_step = int(checkpoint.get("global_step", 0))

    # the run's folder only once every input has loaded: a bad file leaves nothing behind
    run_name = cli.claim_run_dir(args.run_dir, f"{env_spec.env_id}__{args.exp_name}__{args.seed}__{int(start_time)}")
    save_path = args.save_path or os.path.join(args.run_dir, run_name, "agent.pt")  # a new folder: nothing to overwrite
    writer = SummaryWriter(os.path.join(args.run_dir, run_name))
    writer.add_text("hyperparameters", cli.hyperparameters_text(args))
    envs = env_lib.make_vector_env(env_spec, args.num_envs)

    # rollout storage, filled in place: the rollout runs in numpy (Agent.numpy_policy), the update in torch
    T, N, D = args.num_steps, args.num_envs, env_spec.obs_dim
    discrete, n_out = env_spec.discrete, agent.n_outputs
    obs = np.zeros((T, N, D), dtype=np.float32)
    actions = np.zeros((T, N), dtype=np.int64) if discrete else np.zeros((T, N, n_out), dtype=np.float32)
    executed = actions if discrete else np.zeros((T, N, n_out), dtype=np.float32)  # a Box action as the env got it: clipped
    outputs, values = np.zeros((T, N, n_out), dtype=np.float32), np.zeros((T, N), dtype=np.float32)  # logits, or the Gaussian's mean
    env_rewards, dones = np.zeros((T, N), dtype=np.float32), np.zeros((T, N), dtype=bool)
    terminations = np.zeros((T, N), dtype=bool)
    last_obs = np.zeros((T, N, D), dtype=np.float32)  # o_t+1: the observation each action led to (off the grid, with --rlhf)
    bootstrap = np.zeros((T, N), dtype=np.float32)  # gamma V(final obs) on truncation steps
    episode_optimal = np.zeros((T, N))  # optimal return of the episode each step belongs to (the moving dot)
    true_carry, learned_carry, length_carry = np.zeros(N), np.zeros(N), np.zeros(N)
    return_carry, return_stats = np.zeros(N), np.array([1e-4, 0.0, 1.0])  # --norm-reward's running discounted return
    rng = np.random.default_rng(args.seed)  # the rollout's action sampling
    null_action = np.asarray(env_spec.null_action())

    global_step = start_step
    next_obs, info = envs.reset(seed=args.seed)
    current_optimal = info.get("optimal_return")
    recent = {"return": float("nan"), "normalized": float("nan")}
    bar = tqdm(total=args.num_iterations * args.batch_size, desc="ppo", unit="step", unit_scale=True,
               disable=not args.progress, mininterval=0.5)
    for iteration in range(1, args.num_iterations + 1):
        if args.anneal_lr:
            optimizer.lr = (1.0 - (iteration - 1.0) / args.num_iterations) * args.learning_rate

        # collect
        policy = agent.numpy_policy()  # the current weights; rebuilt after every update
        bootstrap.fill(0.0)
        if discrete:
            noise = -np.log(-np.log(rng.random((T, N, n_out))))  # argmax(logits + Gumbel) samples softmax(logits)
        else:
            std = agent.action_std()
            noise = std * rng.standard_normal((T, N, n_out)).astype(np.float32)  # mean + std N(0, 1) samples the Gaussian
        for step in range(T):
            outputs[step], values[step] = policy(next_obs)
            obs[step], episode_optimal[step] = next_obs, current_optimal if current_optimal is not None else 0
            if discrete:
                actions[step] = (outputs[step] + noise[step]).argmax(1)
                env_action = actions[step]
            else:  # the env gets the action clipped to its bounds, the update the sampled one (CleanRL's ClipAction)
                actions[step] = outputs[step] + noise[step]
                executed[step] = np.clip(actions[step], env_spec.action_low, env_spec.action_high)
                env_action = executed[step]
            next_obs, env_rewards[step], terminations[step], truncated, info = envs.step(env_action)
            dones[step] = terminations[step] | truncated
            if dones[step].any() or reward_model is not None and learned_table is None:
                last_obs[step] = env_lib.last_observations(next_obs, info)
            if truncated.any():  # a time limit is not a terminal state: bootstrap from the last observation
                bootstrap[step, truncated] = args.gamma * policy(last_obs[step][truncated])[1]
            current_optimal = info.get("optimal_return")
        if discrete:
            log_probs = outputs - outputs.max(-1, keepdims=True)
            log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
            logprobs = np.take_along_axis(log_probs, actions[..., None], -1)[..., 0]
        else:
            logprobs = (-0.5 * (noise / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)).sum(-1)
        global_step += args.batch_size

        # relabel: on the grid the moves are deterministic, so r(o_t, a_t, o_t+1) is the table's (o_t, a_t) entry;
        # elsewhere one batched call, and a terminated episode's absorbing state pays its learned reward for ever
        absorbing_tail = 0.0
        if learned_table is not None:
            learned = learned_table[md.position_to_state(obs.astype(np.int64)), actions]
        elif reward_model is not None:
            learned = learned_reward(obs, executed, last_obs, terminal=terminations)  # the reward of what the env did, as the DB stores it
            if terminations.any():
                final = last_obs[terminations]
                null = np.broadcast_to(null_action, (len(final), *null_action.shape))
                absorbing_tail = np.zeros((T, N), dtype=np.float32)
                absorbing_tail[terminations] = args.gamma / (1 - args.gamma) * learned_reward(final[:, None], null[:, None], final[:, None], absorbing=True)[:, 0]
        else:
            learned = None
        rewards = env_rewards if learned is None else learned
        if args.norm_reward:  # scale the reward (and the absorbing tail, which is made of it) by the return's running std
            scale, return_carry = discounted_return_std(rewards, dones, return_carry, return_stats, args.gamma)
            rewards, absorbing_tail = np.clip(rewards / scale, -10, 10), absorbing_tail / scale

        # log the episodes that ended: true return always, learned return under --rlhf
        true_returns, done_t, done_env, true_carry = episode_sums(env_rewards, dones, true_carry)
        lengths, *_, length_carry = episode_sums(np.ones((T, N)), dones, length_carry)
        if learned is not None:
            learned_returns, *_, learned_carry = episode_sums(learned, dones, learned_carry)
        for i in range(len(true_returns)):  # one TensorBoard entry per finished episode
            step_of_episode = global_step - args.batch_size + (done_t[i] + 1) * N
            optimal = episode_optimal[done_t[i], done_env[i]]
            writer.add_scalar("charts/episodic_return", true_returns[i], step_of_episode)
            writer.add_scalar("charts/episodic_length", lengths[i], step_of_episode)
            if current_optimal is not None and optimal > 0:
                writer.add_scalar("charts/normalized_return", true_returns[i] / optimal, step_of_episode)
            if learned is not None:
                writer.add_scalar("charts/learned_return", learned_returns[i], step_of_episode)
        if len(true_returns):
            optimal = episode_optimal[done_t, done_env]
            recent = {"return": float(true_returns.mean()),
                      "normalized": md.normalized_return(true_returns, optimal) if current_optimal is not None else float("nan")}

        # advantages: GAE, with the truncation bootstrap folded into the reward of that step
        advantages = gae(rewards + absorbing_tail + bootstrap, values, dones, policy(next_obs)[1], args.gamma, args.gae_lambda)
        returns = advantages + values

        # update: the loss's gradient by hand in numpy (rlhf/ppo_loss.py), or with --autograd by torch
        if use_numpy:
            batch = (numpy_loss.observations(obs.reshape(T * N, D)), *(a.reshape(T * N, *a.shape[2:]) for a in (actions, logprobs, advantages, returns, values)))
        else:
            batch = tuple(torch.as_tensor(a, device=device).flatten(0, 1) for a in (obs, actions, logprobs, advantages, returns, values))
        minibatch_stats = []
        for _epoch in range(args.update_epochs):
            b_inds = torch.randperm(args.batch_size)
            for start in range(0, args.batch_size, args.minibatch_size):
                mb = b_inds[start:start + args.minibatch_size]
                if use_numpy:
                    minibatch_stats.append(numpy_loss(batch, mb.numpy(), args))
                else:
                    optimizer.zero_grad()
                    minibatch_stats.append(ppo_loss.autograd_loss(agent, batch, mb.to(device), args))
                clip_grad_norm(optimizer.grad, args.max_grad_norm)
                optimizer.step()
            if args.target_kl is not None and minibatch_stats[-1]["approx_kl"] > args.target_kl:
                break

        if agent.norm_obs:  # after the update, so that the rollout and the update on it saw the same scaling
            agent.update_obs_stats(obs.reshape(-1, D))

        # log the update
        y_pred, y_true = values.reshape(-1), returns.reshape(-1)
        var_y = np.var(y_true)
        explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y
        sps = int((global_step - start_step) / (time.time() - start_time))
        writer.add_scalar("charts/learning_rate", optimizer.lr, global_step)
        last = minibatch_stats[-1]
        for key in ("value_loss", "policy_loss", "entropy", "old_approx_kl"):  # the last minibatch's, as CleanRL logs them
            writer.add_scalar(f"losses/{key}", last[key], global_step)
        for key in ("approx_kl", "clipfrac"):  # the update's mean
            writer.add_scalar(f"losses/{key}", np.mean([stats[key] for stats in minibatch_stats]), global_step)
        writer.add_scalar("losses/explained_variance", explained_var, global_step)
        writer.add_scalar("charts/SPS", sps, global_step)
        bar.update(args.batch_size)
        bar.set_postfix(ret=f"{recent['return']:.1f}", norm=f"{recent['normalized']:.3f}", sps=sps, refresh=False)
    bar.close()
    train_seconds = time.time() - start_time

    # evaluate the greedy and the sampled policy on the same fixed starts
    agent.eval()
    greedy = agent_lib.evaluate(agent, env_spec, args.eval_episodes, args.eval_seed, greedy=True, capture=args.capture_video)
    sampled = agent_lib.evaluate(agent, env_spec, args.eval_episodes, args.eval_seed, greedy=False)
    for name, result in (("greedy", greedy), ("sampled", sampled)):
        for key in ("normalized_return", "true_return", "terminated_fraction"):
            if key in result:
                writer.add_scalar(f"eval/{name}_{key}", result[key], global_step)
    summary = {"global_step": global_step, "train_seconds": train_seconds, "sps": int((global_step - start_step) / train_seconds),
               "resumed_from": args.resume, "start_step": start_step,
               "greedy": {k: v for k, v in greedy.items() if k != "path"}, "sampled": sampled}
    agent_lib.save(save_path, agent, env_spec.params(), optimizer,
                   {"global_step": global_step, "args": cli.recorded(args), "summary": summary},
                   overwrite=args.overwrite)
    if args.capture_video and env_spec.tabular:
        make_gif(os.path.join(args.run_dir, run_name, "agent.gif"), greedy["path"])
    elif args.capture_video:
        capture_episode(os.path.join(args.run_dir, run_name, "agent.gif"), agent, env_spec, args.eval_seed)
    writer.close()
    print(f"{'rlhf (' + args.reward_model + ')' if args.rlhf else 'env reward'}: {global_step} steps in {train_seconds:.1f} s "
          f"({summary['sps']} steps/s)" + (f", resumed from {args.resume} at step {start_step}" if args.resume else ""))
    for name, result in (("greedy", greedy), ("sampled", sampled)):
        if "normalized_return" in result:
            print(f"{name:>8} policy on {args.eval_episodes} fixed starts: true return {result['true_return']:.2f}, "
                  f"optimal {result['optimal_return']:.2f}, normalized {result['normalized_return']:.4f}")
        else:
            print(f"{name:>8} policy on {args.eval_episodes} fixed starts: true return {result['true_return']:.2f}"
                  f" +- {result['return_std']:.2f}, length {result['episode_length']:.1f}, terminated {result['terminated_fraction']:.0%}")
    print(f"wrote {save_path} and {os.path.join(args.run_dir, run_name)}")
    return summary


if __name__ == "__main__":
    gc.freeze()  # the imports' objects (torch's are many) skip every collection, the exit's too (docs/performance.md)
    try:
        main(parse_args())
    except (rm.RewardModelError, agent_lib.AgentFileError, env_lib.EnvError) as e:
        sys.exit(f"ppo_rlhf.py: error: {e}")
