"""Argparse helpers shared by the scripts: value checks, so that a bad flag fails at parse time
with a one-line message that names the flag's problem; the env's defaults for ``--env-id``; and the
parsed flags as a run records them (its files, its TensorBoard text); and a new folder per run."""

import argparse
import itertools
import math
import os


def _number(kind, text, ok, what):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{text} is not {what}")
    return value


def positive_int(text):
    return _number(int, text, lambda v: v > 0, "a positive integer")


def nonnegative_int(text):
    return _number(int, text, lambda v: v >= 0, "a non-negative integer")


def finite_float(text):
    return _number(float, text, math.isfinite, "a finite number")


def positive_float(text):
    return _number(float, text, lambda v: v > 0 and math.isfinite(v), "a positive number")


def nonnegative_float(text):
    return _number(float, text, lambda v: v >= 0 and math.isfinite(v), "a non-negative number")


def probability(text):
    return _number(float, text, lambda v: 0 <= v <= 1, "a probability in [0, 1]")


def fraction_below_one(text):
    return _number(float, text, lambda v: 0 <= v < 1, "a fraction in [0, 1)")


def discount(text):
    return _number(float, text, lambda v: 0 < v <= 1, "a discount in (0, 1]")


def env_spec_with_defaults(parser, argv, stage, continuous_defaults=False):
    """The env of ``--env-id`` (an unknown or unsupported one is one argparse error) with its
    defaults for ``stage`` (envs.DEFAULTS) set on ``parser``, so that a flag given still wins.
    ``continuous_defaults``: an env not listed gets CleanRL's continuous-action settings for a Box action."""
    from rlhf import envs  # gymnasium only for the scripts that take --env-id

    env_id = parser.parse_known_args(argv)[0].env_id
    try:
        spec = envs.spec(env_id)
    except envs.EnvError as e:
        parser.error(str(e))
    parser.set_defaults(**envs.defaults(env_id, stage, continuous=continuous_defaults and not spec.discrete))
    return spec


def recorded(args) -> dict:
    """The parsed flags as a run's files record them: every value but the EnvSpec (``args.spec``)
    that a stage's parse_args adds, which is not JSON."""
    return {key: value for key, value in vars(args).items() if key != "spec"}


def hyperparameters_text(args) -> str:
    """The flags as CleanRL writes them into TensorBoard once (``add_text("hyperparameters", ...)``): a Markdown table."""
    return "|param|value|\n|-|-|\n" + "\n".join(f"|{key}|{value}|" for key, value in recorded(args).items())


def claim_run_dir(parent: str, name: str) -> str:
    """A new folder ``parent/name`` for one run's TensorBoard events, made now, and its name: runs named
    alike (CleanRL's ``env__exp__seed__time`` has one-second resolution) get ``name_2``, ``name_3``, ...
    instead of writing into one folder. ``os.mkdir`` fails on a folder that exists, so two processes
    never claim the same one."""
    os.makedirs(parent, exist_ok=True)
    for i in itertools.count(1):
        candidate = name if i == 1 else f"{name}_{i}"
        try:
            os.mkdir(os.path.join(parent, candidate))
            return candidate
        except FileExistsError:
            continue
