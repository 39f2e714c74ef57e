"""``alchemy-mbrl bayes-entropy``: the Bayes-optimal entropy floor of Table 2 (:mod:`alchemy_mbrl.bayes.entropy`)."""

from __future__ import annotations

import argparse


DESCRIPTION = """\
The exact Bayesian model knows the prior over chemistries and the dynamics, so no world model
trained on the same data can have a lower expected cross-entropy. This command reports that floor
on the manifest's validation shards, with the same split as `model-eval`: transitions into a
trial's first observation vs the rest (the "chemistry part"), both per step of all transitions
(docs/formats.md, "Model evaluation")."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bayes-entropy",
        help="Bayes-optimal entropy loss (nats/step) on the validation shards (Table 2's floor)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help="dataset manifest (JSON) whose validation shards are scored")
    p.add_argument("--out", required=True, help="output JSON file")
    p.add_argument("--max-episodes", type=int, default=None, help="score only the first N validation episodes")
    p.add_argument("--batch-episodes", type=int, default=1000, help="episodes filtered together (memory ~ 10 kB each)")
    p.add_argument(
        "--per-dimension",
        action="store_true",
        help="also report the factorised split (reward, then the 39 observation dimensions); about 10x slower",
    )
    p.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    p.set_defaults(func=cmd_bayes_entropy)


def cmd_bayes_entropy(args: argparse.Namespace) -> int:
    from alchemy_mbrl.bayes.entropy import bayes_entropy
    from alchemy_mbrl.io import write_json
    from alchemy_mbrl.stats import format_entropy

    from alchemy_mbrl.cli._paths import manifest_inputs
    from alchemy_mbrl.io import command_outputs

    with command_outputs(inputs=manifest_inputs(args.data), outputs=[args.out]):
        res = bayes_entropy(
            args.data, args.max_episodes, args.batch_episodes, progress=not args.no_progress,
            per_dimension=args.per_dimension
        )
        write_json(args.out, res)
    print(format_entropy(res))
    return 0
