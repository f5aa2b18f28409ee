"""Stage 2: fit the reward model to the stored preferences.

    python train_reward_model.py --db preferences.db --out reward_model.pt
    python train_reward_model.py --env-id MountainCar-v0 --db mountain_car.db --out mountain_car_rm.pt

Reads the labeled, comparable comparisons of a preferences DB (make_preferences_db.py),
minimizes C17's Bradley-Terry cross-entropy on the training split with Adam for a fixed
budget of steps, the step size decaying to 0 (or, with a larger --max-steps, until the held-out
loss stops improving: the best weights are kept), and scores the result: on the moving dot against
the true reward over every (position, action) of the field, exactly; on other envs against the
oracle that labeled the DB, on the held-out segments' steps. On the moving dot, by default the reward is r(o, a, o') = phi(o') -
phi(o), a 3-member ensemble's mean: no loop of states earns anything (docs/results.md, "Judging a
learned reward"); elsewhere the reward is the state-action form r(o, a) (envs.DEFAULTS), since a
potential cannot pay for every step an episode survives. The write-up's recipe is `--reward-form state-action --activation tanh
--ensemble-size 1 --position-scale 1 --learning-rate 2.5e-4 --no-anneal-lr --batch-size 128
--max-steps 100000 --ema-decay 0`. Writes the model file (--out), TensorBoard logs under
runs/ and a PNG of the learned reward (--plot).
"""

import argparse
import copy
import gc
import os
import sys
import time

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from rlhf import adam, cli, db, envs
from rlhf import moving_dot as md
from rlhf import reward_model as rm
from rlhf import value_iteration as vi


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Fit the reward model to the preferences in a DB.")
    p.add_argument("--seed", type=int, default=1, help="seed of the init and the batch sampling")
    p.add_argument("--db", default="preferences.db", help="the preferences DB to read")
    p.add_argument("--out", default="reward_model.pt", help="the model file to write (write-up: rewards_model)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--env-id", default=envs.DEFAULT_ENV_ID, help="the env the DB was made for (envs.py)")
    p.add_argument("--plot", default=None, help="PNG of the learned reward (default: --out with .png)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG (C17's loop draws only its last round's)")
    p.add_argument("--init", default=None,
                   help="start from this model file's weights (its encoding and sizes win over the flags): C17's loop")
    p.add_argument("--label-source", choices=("all", "synthetic", "human"), default="all", help="which labels to train on")
    p.add_argument("--learning-rate", type=cli.positive_float, default=1e-2, help="Adam step size at the start (write-up: 2.5e-4)")
    p.add_argument("--anneal-lr", action=argparse.BooleanOptionalAction, default=True,
                   help="decay the step size linearly to 0 at --max-steps, as CleanRL's PPO (write-up: constant)")
    p.add_argument("--adam-eps", type=cli.positive_float, default=1e-5, help="Adam epsilon (write-up: 1e-5)")
    p.add_argument("--batch-size", type=cli.positive_int, default=256, help="comparisons per gradient step and member (write-up: 128)")
    p.add_argument("--max-steps", type=cli.positive_int, default=400, help="gradient step budget (write-up: 100000)")
    p.add_argument("--eval-every", type=cli.positive_int, default=100, help="gradient steps between held-out evaluations")
    p.add_argument("--patience", type=cli.positive_int, default=4, help="stop after this many evaluations without a better held-out loss")
    p.add_argument("--min-delta", type=cli.nonnegative_float, default=1e-3, help="held-out loss improvement that counts as better")
    p.add_argument("--reward-form", choices=rm.FORMS, default="potential",
                   help="r(o, a, o') = phi(o') - phi(o), which no loop can exploit, or the write-up's r(o, a) (state-action)")
    p.add_argument("--activation", choices=rm.ACTIVATIONS, default="relu", help="hidden-layer nonlinearity (write-up: tanh)")
    p.add_argument("--encoding", choices=rm.ENCODINGS, default="normalized",
                   help="network input: the normalized position (+ one-hot action), or the write-up's raw (x, y, action)")
    p.add_argument("--hidden-size", type=cli.positive_int, default=64, help="units per hidden layer (write-up: 64)")
    p.add_argument("--position-scale", type=cli.positive_float, default=30.0,
                   help="normalized encoding: the position spans [-this, this]; above 1 the learned potential's peak is sharper")
    p.add_argument("--terminal-input", action=argparse.BooleanOptionalAction, default=False,
                   help="state-action form, an env that terminates: the network sees which step ended the episode, so "
                        "that a crash's or a landing's reward is learned on that step (reward_model.RewardModel)")
    p.add_argument("--ensemble-size", type=cli.positive_int, default=3,
                   help="members, each on its own bootstrap batches; the reward is their mean (C17: 3; write-up: 1)")
    p.add_argument("--label-noise", type=cli.fraction_below_one, default=0.0, help="assumed share of random answers (C17: 0.1)")
    p.add_argument("--weight-decay", type=cli.nonnegative_float, default=0.0, help="L2 penalty (C17 used L2 regularization)")
    p.add_argument("--ema-decay", type=cli.fraction_below_one, default=0.999,
                   help="evaluate and keep an exponential moving average of the weights (Polyak averaging); 0: the raw weights")
    p.add_argument("--run-dir", default="runs", help="parent folder of the TensorBoard run")
    p.add_argument("--cuda", action=argparse.BooleanOptionalAction, default=True, help="use CUDA when available")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar")
    args_spec = cli.env_spec_with_defaults(p, argv, "train_reward_model")
    args = p.parse_args(argv)
    args.spec = args_spec
    if args.terminal_input and (args_spec.tabular or args.reward_form != "state-action"):
        p.error(f"--terminal-input needs an env that terminates and --reward-form state-action"
                f"{' (the moving dot never terminates)' if args_spec.tabular else ''}; drop it")
    args.plot = args.plot or os.path.splitext(args.out)[0] + ".png"
    return args


@torch.no_grad()
def evaluate(model, comparisons, inputs, mu1, mu2, label_noise):
    """Loss, accuracy (rm.comparison_accuracy's) and R1 - R2 of the mean reward on comparisons, encoded
    (rm.comparison_inputs), their labels on the device: one call of the network."""
    returns1, returns2 = rm.comparison_returns(model, inputs)
    loss = rm.preference_loss(returns1, returns2, mu1, mu2, label_noise).mean().item()
    returns1, returns2 = returns1.cpu().numpy(), returns2.cpu().numpy()
    return loss, rm.preference_accuracy(returns1, returns2, comparisons.mu1, comparisons.mu2), returns1 - returns2


def label_classes(mu1, mu2):
    return {"segment1_preferred": mu1 > mu2, "equal": mu1 == mu2, "segment2_preferred": mu1 < mu2}


def plot(path, history, diff, classes, summary, table=None, policy=None, steps_vs_oracle=None):
    """The training run in one PNG: on the moving dot the learned reward over the field and its
    optimal policy (``table``, ``policy``); elsewhere the learned reward against the oracle's score
    on the held-out steps (``steps_vs_oracle``); the loss curves, R1 - R2 by label and the summary."""
    from matplotlib.figure import Figure  # not pyplot, and a fixed layout: each costs about a second here (docs/performance.md)

    fig = Figure(figsize=(20, 8.5) if table is not None else (20, 4.5))
    margins = {"left": 0.055, "right": 0.99, "bottom": 0.07, "top": 0.95, "wspace": 0.3, "hspace": 0.3}
    grid = fig.add_gridspec(2, 6, **margins) if table is not None else fig.add_gridspec(1, 6, **{**margins, "bottom": 0.13, "top": 0.88})
    row = 1 if table is not None else 0
    if table is not None:
        _plot_grid(fig, grid, table, policy, summary)
    else:
        ax = fig.add_subplot(grid[0, 3:5])
        learned, oracle = steps_vs_oracle
        ax.plot(oracle, learned, ".", markersize=2, alpha=0.3)
        ax.set(xlabel=f"oracle's score of the step ({summary['oracle']})", ylabel="learned reward",
               title=f"held-out steps: correlation {summary['reward_correlation']:.3f}")
    ax = fig.add_subplot(grid[row, 0])
    steps, train_loss, val_loss = zip(*history)
    ax.plot(steps, train_loss, label="train")
    ax.plot(steps, val_loss, label="held-out")
    ax.set(xlabel="gradient step", ylabel="preference loss", yscale="log", title="loss")
    ax.legend()
    ax = fig.add_subplot(grid[row, 1:3])
    bins = np.linspace(diff.min(), diff.max(), 60) if len(diff) else 10
    for name, mask in classes.items():
        if mask.any():
            ax.hist(diff[mask], bins=bins, alpha=0.6, label=f"{name.replace('_', ' ')} ({mask.sum()})")
    ax.set(xlabel="R1 - R2", ylabel="held-out comparisons", title="held-out R1 - R2 by label" if len(diff) else "no held-out comparisons")
    if len(diff):
        ax.legend()
    ax = fig.add_subplot(grid[row, 5])
    ax.axis("off")
    ax.text(-0.1, 1, "\n".join(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}"
                            for key, value in summary.items() if key != "args"), va="top", family="monospace", fontsize=8.5)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=80, pil_kwargs={"compress_level": 1})  # zlib's fastest: a larger PNG, written faster (docs/performance.md)


def _plot_grid(fig, grid, table, policy, summary):
    """The moving dot's panels: the learned reward of each action over the field, and its optimal policy."""
    limit = max(float(np.abs(table).max()), 1e-6)
    extent = (md.X_MIN - 0.5, md.X_MAX + 0.5, md.Y_MAX + 0.5, md.Y_MIN - 0.5)
    for a in range(md.N_ACTIONS):
        ax = fig.add_subplot(grid[0, a])
        image = ax.imshow(table[:, a].reshape(md.N_X, md.N_Y).T, cmap="RdBu", vmin=-limit, vmax=limit, extent=extent)
        ax.plot(*md.CENTRE, "k+", markersize=10)
        ax.set_title(f"learned r(o, {md.ACTION_NAMES[a]})")
    holder = fig.add_subplot(grid[0, 5])  # the colorbar sits in the free cell, leaving the five panels their size
    holder.axis("off")
    fig.colorbar(image, cax=holder.inset_axes((0.0, 0.1, 0.07, 0.8)))
    # the optimal policy of the learned reward (as PPO sees it): green where it moves the way the true reward asks
    ax = fig.add_subplot(grid[1, 3:5])
    shown = np.flatnonzero((md.POSITIONS[:, 0] % 10 == 5) & (md.POSITIONS[:, 1] % 10 == 0))
    good = md.TRUE_REWARD[shown, policy[shown]] == md.TRUE_REWARD[shown].max(1)
    delta = md.ACTION_DELTAS[policy[shown]]
    for mask, colour in ((good, "tab:green"), (~good, "tab:red")):
        ax.quiver(*md.POSITIONS[shown[mask]].T, delta[mask, 0], delta[mask, 1], color=colour,
                  angles="xy", scale_units="xy", scale=1 / 7, width=0.004)
        stay = mask & (policy[shown] == 0)
        ax.plot(*md.POSITIONS[shown[stay]].T, ".", color=colour, markersize=3)
    ax.plot(*md.CENTRE, "k+", markersize=10)
    ax.set(xlim=extent[:2], ylim=extent[2:], aspect="equal",
           title=f"optimal policy of the {summary['reward_transform']}d learned reward: {summary['optimal_policy_normalized_return']:.3f} of the "
                 f"optimum\n(worst tied optimal policy: {summary['optimal_policy_worst_normalized_return']:.3f}); "
                 "green: a best move under the true reward")


def main(args):
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # parallel jobs never oversubscribe the cores, and a seed trains the same anywhere (docs/performance.md)
    rng = np.random.default_rng(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")
    rm.refuse_existing(args.out, args.overwrite)  # fail before training, not after

    # load: labeled, comparable rows only (incomparable and pending ones are never trained on)
    meta = db.read_metadata(args.db)
    envs.check_params(meta["env"], args.spec, args.db, f"make a DB for it with `python make_preferences_db.py --env-id {args.spec.env_id}`")
    data = db.load_comparisons(args.db, statuses=("labeled",), label_source=args.label_source)
    train, val = data.subset(~data.validation), data.subset(data.validation)
    if len(train) == 0:
        raise db.PreferencesDBError(f"{args.db} has no labeled training comparisons (label source {args.label_source}); label some or generate them with make_preferences_db.py")
    if args.init:  # continue from an earlier model: the same network, trained further on all labels so far
        model = rm.load(args.init, device, env_spec=args.spec).train()
        for key in ("encoding", "ensemble_size", "hidden_size", "form", "activation", "position_scale", "terminal_input"):
            setattr(args, "reward_form" if key == "form" else key, model.config[key])
    else:
        model = rm.for_env(args.spec, args.encoding, args.ensemble_size, args.hidden_size, args.reward_form, args.activation,
                           args.position_scale, args.terminal_input)
        model.set_obs_scaling(args.spec.obs_low, args.spec.obs_high, np.concatenate([train.obs1, train.obs2]))
        model.to(device)
    train_inputs, val_inputs = rm.comparison_inputs(model, train).to(device), rm.comparison_inputs(model, val).to(device)
    train_mu1, train_mu2 = torch.as_tensor(train.mu1, device=device), torch.as_tensor(train.mu2, device=device)
    val_mu1, val_mu2 = torch.as_tensor(val.mu1, device=device), torch.as_tensor(val.mu2, device=device)
    optimizer = adam.Adam(model.parameters(), lr=args.learning_rate, eps=args.adam_eps, weight_decay=args.weight_decay)
    run_name = cli.claim_run_dir(args.run_dir, f"{args.spec.env_id}__train_reward_model__{args.seed}__{int(time.time())}")
    writer = SummaryWriter(os.path.join(args.run_dir, run_name))
    writer.add_text("hyperparameters", cli.hyperparameters_text(args))
    if len(val) == 0:
        print(f"warning: {args.db} has no held-out comparisons: early stopping watches the training loss instead")
    absorbing_steps = int(train.absorbing1.sum() + train.absorbing2.sum())
    if model.absorbing_state and absorbing_steps == 0:  # e.g. Mountain Car's random clips: none reaches the flag
        print(f"warning: no training segment in {args.db} reaches the end of an episode, so the learned reward of ending one "
              "(the absorbing state) is untrained and PPO's normalization takes it as its zero; label segments that end "
              "(rlhf_loop.py, or make_preferences_db.py --policy agent.pt): docs/other_envs.md")

    # train; the moving average smooths Adam's step-to-step noise out of the weights that are evaluated and kept
    averaged = copy.deepcopy(model) if args.ema_decay > 0 else model
    raw_params, averaged_params = list(model.parameters()), list(averaged.parameters())
    best = {"loss": float("inf"), "step": 0, "state": copy.deepcopy(averaged.state_dict())}
    history, bad_evals, running = [], 0, []
    bar = tqdm(range(1, args.max_steps + 1), desc="reward model", disable=not args.progress, mininterval=0.5)
    for step in bar:
        # each member draws its own batch: C17's bootstrap, and plain sampling when there is one member
        if args.anneal_lr:
            optimizer.lr = (1.0 - (step - 1.0) / args.max_steps) * args.learning_rate
        idx = torch.as_tensor(rng.integers(len(train), size=(args.ensemble_size, args.batch_size)), device=device)
        returns1, returns2 = rm.segment_returns(model, train_inputs[idx], per_member=True).unbind(-1)
        loss = rm.preference_loss(returns1, returns2, train_mu1[idx], train_mu2[idx], args.label_noise).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if args.ema_decay > 0:
            with torch.no_grad():
                decay = min(args.ema_decay, (1 + step) / (10 + step))  # a short warm-up: the init is not worth averaging in
                torch._foreach_lerp_(averaged_params, raw_params, 1.0 - decay)
        running.append(loss.item())

        if step % args.eval_every and step != args.max_steps:
            continue
        # evaluate on the held-out split
        train_loss = float(np.mean(running))
        running.clear()
        if len(val):
            val_loss, val_accuracy, diff = evaluate(averaged, val, val_inputs, val_mu1, val_mu2, args.label_noise)
            writer.add_scalar("val/loss", val_loss, step)
            writer.add_scalar("val/accuracy", val_accuracy, step)
            for name, mask in label_classes(val.mu1, val.mu2).items():
                if mask.any():
                    writer.add_histogram(f"val/r_diff_{name}", diff[mask], step)
        else:
            val_loss, val_accuracy = float("nan"), float("nan")
        writer.add_scalar("train/loss", train_loss, step)
        history.append((step, train_loss, val_loss))
        bar.set_postfix(val_loss=f"{val_loss:.4f}", val_acc=f"{val_accuracy:.4f}")
        # early stopping on the held-out loss; with no held-out labels (a handful of human ones), on the training loss
        watched = val_loss if len(val) else train_loss
        if watched < best["loss"] - args.min_delta:
            best, bad_evals = {"loss": watched, "step": step, "state": copy.deepcopy(averaged.state_dict())}, 0
        else:
            bad_evals += 1
            if bad_evals >= args.patience:
                break
    bar.close()
    model.load_state_dict(best["state"])  # early stopping keeps the best weights
    model.eval()

    # score: held-out preferences, and the learned reward against the true one
    val_loss, val_accuracy, diff = (evaluate(model, val, val_inputs, val_mu1, val_mu2, args.label_noise)
                                    if len(val) else (float("nan"), float("nan"), np.zeros(0)))
    train_accuracy = rm.comparison_accuracy(model, train, train_inputs)  # vs held-out: the gap
    model.reward_stats = step_reward_stats(model, train)
    train_seconds = time.perf_counter() - start
    summary = {
        "env_id": args.spec.env_id, "db": args.db, "label_source": args.label_source, "n_train": len(train), "n_validation": len(val),
        "segment_length": int(train.actions1.shape[1]), "steps": step, "best_step": best["step"],
        "stopped_early": bool(step < args.max_steps), "val_loss": val_loss, "val_accuracy": val_accuracy,
        "train_accuracy": train_accuracy, "absorbing_steps": absorbing_steps,
    }
    if args.spec.tabular:  # the moving dot: exactly, over every (position, action) of the field
        table = rm.reward_table(model)
        # the exact optimal policy of the learned reward as PPO uses it by default (value_iteration.py)
        scores, policy = vi.reward_scores(rm.transform_rewards(table, rm.TRANSFORMS[0], table))
        summary.update({
            "action_order_agreement": rm.action_order_agreement(table), "reward_correlation": rm.reward_correlation(table),
            "epic_distance": rm.epic_distance(model), "reward_transform": rm.TRANSFORMS[0],
            "optimal_policy_normalized_return": scores["argmax"], "optimal_policy_worst_normalized_return": scores["worst"],
            "action_margin": scores["margin"],
        })
        scored = ("action_order_agreement", "reward_correlation", "epic_distance", "optimal_policy_normalized_return",
                  "optimal_policy_worst_normalized_return", "action_margin")
        figure = {"table": table, "policy": policy}
    else:  # elsewhere: against the oracle that labeled the DB, on the held-out segments' steps
        oracle = labeling_oracle(meta)
        figure = {"steps_vs_oracle": held_out_steps(model, val if len(val) else train, oracle, args.spec.env_id)}
        learned, true, learned_returns, true_returns = figure["steps_vs_oracle"]
        figure["steps_vs_oracle"] = (learned, true)
        summary.update({"oracle": oracle, "reward_correlation": _correlation(learned, true),
                        "return_correlation": _correlation(learned_returns, true_returns),
                        "epic_distance": held_out_epic(model, val if len(val) else train, oracle, args.spec)})
        scored = ("reward_correlation", "return_correlation", "epic_distance")
    summary.update({"train_seconds": train_seconds, "score_seconds": time.perf_counter() - start - train_seconds,
                    "args": cli.recorded(args)})
    for key in scored:
        writer.add_scalar(f"reward/{key}", summary[key], step)
    writer.close()

    # save
    rm.save(model, args.out, summary, overwrite=args.overwrite, env_params=args.spec.params())
    if not args.no_plot:
        plot(args.plot, history, diff, label_classes(val.mu1, val.mu2), summary, **figure)
    print(f"trained on {len(train)} comparisons ({len(val)} held out) for {step} steps"
          f"{' (early stop, best at ' + str(summary['best_step']) + ')' if summary['stopped_early'] else ''}"
          f" in {summary['train_seconds']:.1f} s")
    if args.spec.tabular:
        print(f"held-out loss {val_loss:.4f}, held-out accuracy {val_accuracy:.4f} (training pairs: {train_accuracy:.4f}), "
              f"action-order agreement {summary['action_order_agreement']:.4f}, reward correlation {summary['reward_correlation']:.4f}")
        print(f"optimal policy of the learned reward, {rm.TRANSFORMS[0]}d as PPO's default: normalized true return "
              f"{scores['argmax']:.4f} (argmax), {scores['worst']:.4f} (worst of the tied optimal policies), action margin "
              f"{scores['margin']:.2f} of the true reward's; EPIC distance to the true reward {summary['epic_distance']:.4f};"
              f" scoring took {summary['score_seconds']:.1f} s")
    else:
        print(f"held-out loss {val_loss:.4f}, held-out accuracy {val_accuracy:.4f} (training pairs: {train_accuracy:.4f}); "
              f"against the {summary['oracle']} oracle on held-out steps: reward correlation {summary['reward_correlation']:.4f},"
              f" segment-return correlation {summary['return_correlation']:.4f}, EPIC distance {summary['epic_distance']:.4f}")
    print(f"wrote {args.out}{'' if args.no_plot else ', ' + args.plot} and {os.path.join(args.run_dir, run_name)}")
    return summary


def _correlation(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


@torch.no_grad()
def _step_rewards(model, obs, actions, absorbing, terminal):
    """The learned reward (mean over members) of every step of segments, (n, k)."""
    return model.reward(obs[:, :-1], actions, obs[:, 1:], absorbing, terminal)


def step_reward_stats(model, comparisons):
    """(mean, std) of the learned reward over every step of the training segments: what PPO's
    'normalize' transform uses off the moving dot's grid."""
    rewards = np.concatenate([_step_rewards(model, comparisons.obs1, comparisons.actions1, comparisons.absorbing1, comparisons.terminal1).ravel(),
                              _step_rewards(model, comparisons.obs2, comparisons.actions2, comparisons.absorbing2, comparisons.terminal2).ravel()])
    return float(rewards.mean()), float(rewards.std())


def labeling_oracle(meta):
    """The oracle that labeled the DB's synthetic comparisons (the first generator run that used one);
    'reward' when people labeled it all."""
    for run in meta["generator_runs"]:
        oracle = run.get("args", {}).get("oracle")
        if oracle and oracle != "none":
            return oracle
    return "reward"


def held_out_epic(model, comparisons, oracle, env_spec, max_transitions=2000):
    """EPIC between the learned reward and the oracle, estimated on the held-out segments' steps
    (rm.sampled_epic_distance); NaN for the `reward` oracle, which is known only on the env's own
    transitions (EPIC evaluates a reward on pairs of observations no rollout connects)."""
    true = envs.oracle_reward_function(oracle, env_spec.env_id)
    if true is None:
        return float("nan")
    obs = np.concatenate([comparisons.obs1, comparisons.obs2])
    actions = np.concatenate([comparisons.actions1, comparisons.actions2])
    o, a, o_next = obs[:, :-1].reshape(-1, obs.shape[-1]), actions.reshape(-1, *actions.shape[2:]), obs[:, 1:].reshape(-1, obs.shape[-1])
    live = ~np.concatenate([comparisons.absorbing1, comparisons.absorbing2]).ravel()  # the env's own transitions
    keep = np.random.default_rng(0).permutation(np.flatnonzero(live))[:max_transitions]
    return rm.sampled_epic_distance(lambda x, y, z: model.reward(x, y, z), true, o[keep], a[keep], o_next[keep], env_spec.random_actions)


def held_out_steps(model, comparisons, oracle, env_id):
    """The learned reward and the oracle's score of every step of these segments, and both
    segment returns: what a learned reward is judged by where no exact scoring exists."""
    learned, true, learned_returns, true_returns = [], [], [], []
    for obs, actions, rewards, absorbing, terminal in (
            (comparisons.obs1, comparisons.actions1, comparisons.rewards1, comparisons.absorbing1, comparisons.terminal1),
            (comparisons.obs2, comparisons.actions2, comparisons.rewards2, comparisons.absorbing2, comparisons.terminal2)):
        step_learned = _step_rewards(model, obs, actions, absorbing, terminal)
        learned.append(step_learned.ravel())
        true.append(envs.step_scores(oracle, env_id, obs, actions, rewards, absorbing).ravel())
        learned_returns.append(step_learned.sum(1))
        true_returns.append(envs.segment_scores(oracle, env_id, obs, actions, rewards, absorbing))
    return tuple(np.concatenate(x) for x in (learned, true, learned_returns, true_returns))


if __name__ == "__main__":
    gc.freeze()  # the imports' objects (torch's are many) skip every collection, the exit's too (docs/performance.md)
    try:
        main(parse_args())
    except (db.PreferencesDBError, rm.RewardModelError, envs.EnvError) as e:
        sys.exit(f"train_reward_model.py: error: {e}")
