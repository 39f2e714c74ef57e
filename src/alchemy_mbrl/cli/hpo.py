"""``alchemy-mbrl hpo ask|tell|best``: the planner's hyperparameter optimisation, one round at a time.

    alchemy-mbrl hpo ask --round 0 --state-in none --points 4 --seed 7 --initial-points 8 \\
        --temperature 0.05 2 --c1 0.05 5 --c2 0.5 50 --k 1 5 --gamma 0.99 --out-dir results/hpo/round-0
    # ... evaluate round-0/point-{p}.json with `evaluate --params`, merge to summaries ...
    alchemy-mbrl hpo tell --state-in results/hpo/round-0/asked.pkl \\
        --results s0.json s1.json s2.json s3.json --state-out results/hpo/round-0/state.pkl
    alchemy-mbrl hpo ask --round 1 --state-in results/hpo/round-0/state.pkl --points 4 --out-dir results/hpo/round-1
    alchemy-mbrl hpo best --state results/hpo/round-1/state.pkl --out best.json --history history.csv

``ask`` writes ``OUT_DIR/asked.pkl`` (the state after asking), ``OUT_DIR/points.json`` (all
points) and ``OUT_DIR/point-<p>.json`` (one planner parameter file per point).
"""

from __future__ import annotations

import argparse

from alchemy_mbrl import hpo
from alchemy_mbrl.io import command_outputs, write_csv, write_json


def cmd_ask(args: argparse.Namespace) -> int:
    """Load or create the optimizer, ask a batch of points, write them and the state."""
    bounds = {n: getattr(args, n) for n in hpo.PARAM_NAMES}
    state_in = None if str(args.state_in) == "none" else args.state_in
    outputs = [f"{args.out_dir}/{name}" for name in ("asked.pkl", "points.json",
                                                      *(f"point-{p}.json" for p in range(min(max(args.points, 0), 10_000))))]
    with command_outputs(inputs=[(state_in, "HPO state")], outputs=outputs, output_dirs=[args.out_dir]):
        hpo.ask_round(args.round, args.state_in, args.points, args.out_dir, bounds=bounds, gamma=args.gamma,
                      log_scale=args.log_scale, seed=args.seed, initial_points=args.initial_points,
                      acq_func=args.acq_func, acq_optimizer=args.acq_optimizer)
    return 0


def cmd_tell(args: argparse.Namespace) -> int:
    """Tell the asked points their summaries (in point order) and save the round's state."""
    with command_outputs(inputs=[(args.state_in, "HPO state"), *((p, "summary") for p in args.results)], outputs=[args.state_out]):
        state = hpo.load_state(args.state_in)
        summaries = [hpo.read_summary(p) for p in args.results]
        hpo.tell(state, summaries)
        hpo.save_state(state, args.state_out)
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    """Write the best evaluated point (params; optionally with its score) and the history as CSV."""
    with command_outputs(inputs=[(args.state, "HPO state")], outputs=[args.out, args.summary, args.history]):
        state = hpo.load_state(args.state)
        top = hpo.best(state)
        write_json(args.out, {name: top[name] for name in (*hpo.PARAM_NAMES, "gamma")})
        if args.summary:
            write_json(args.summary, top)
        if args.history:
            write_csv(args.history, hpo.HISTORY_COLUMNS, hpo.history_rows(state))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``hpo ask``, ``hpo tell`` and ``hpo best``."""
    p = subparsers.add_parser("hpo", help="Bayesian optimisation of the planner's T, C1, C2, K (ask/tell rounds)")
    sub = p.add_subparsers(dest="hpo_command", metavar="HPO_COMMAND")
    sub.required = True

    a = sub.add_parser("ask", help="ask a batch of points (constant liar) and write one params JSON per point")
    a.add_argument("--round", type=int, required=True, help="round index r (0-based)")
    a.add_argument("--state-in", required=True, help="state.pkl of round r-1, or 'none' for round 0")
    a.add_argument("--points", type=int, required=True, help="points asked in this round (parallel jobs)")
    a.add_argument("--out-dir", required=True, help="writes asked.pkl, points.json, point-<p>.json")
    a.add_argument("--seed", type=int, default=0, help="optimizer seed (round 0 only)")
    a.add_argument("--initial-points", type=int, default=10, help="random points before the GP is used (round 0)")
    a.add_argument("--acq-func", default="gp_hedge", help="skopt acquisition function (round 0)")
    a.add_argument("--acq-optimizer", default="sampling", choices=["sampling", "lbfgs"],
                   help="how the acquisition function is maximised (round 0)")
    for name, typ in (("temperature", float), ("c1", float), ("c2", float), ("k", int)):
        a.add_argument(f"--{name}", type=typ, nargs=2, metavar=("LOW", "HIGH"), help=f"bounds of {name} (round 0)")
    a.add_argument("--gamma", type=float, default=0.99, help="discount, fixed, copied to every point (round 0)")
    a.add_argument("--log-scale", nargs="*", default=[], help="real parameters searched on a log scale (round 0)")
    a.set_defaults(func=cmd_ask)

    t = sub.add_parser("tell", help="tell the asked points their merge-returns summaries")
    t.add_argument("--state-in", required=True, help="asked.pkl written by `hpo ask` for this round")
    t.add_argument("--results", nargs="+", required=True, help="summary JSONs, one per point, in point order")
    t.add_argument("--state-out", required=True, help="state.pkl of this round")
    t.set_defaults(func=cmd_tell)

    b = sub.add_parser("best", help="best evaluated point and the history CSV")
    b.add_argument("--state", required=True, help="state.pkl of the last round")
    b.add_argument("--out", required=True, help="best.json: planner params only (the --params format)")
    b.add_argument("--summary", help="JSON with the params, their score (mean, sem, n) and where they were found")
    b.add_argument("--history", help="history CSV (trial, params, mean, sem, n, running best)")
    b.set_defaults(func=cmd_best)
