"""``alchemy-mbrl report table1|table2|plots``: the paper's tables and figures from workflow outputs.

    alchemy-mbrl report table1 --planner learned:100=S100.json learned:1250=S1250.json bayes:1250=B.json \\
        --baseline random-heuristic=RH.json uniform=U.json \\
        --optimal ideal-observer=IO.json search-oracle=SO.json --out results/tables/table1
    alchemy-mbrl report table2 --model-eval original=O.json gru_backbone=G.json --bayes BAYES.json \\
        --out results/tables/table2
    alchemy-mbrl report table2 --model-eval original@2022=O.json original@2023=O2.json gru_backbone@2022=G.json \\
        --control lr_orig:no_final_linear@2022=C.json --per-episode original@2022=O.csv gru_backbone@2022=G.csv \\
        --bayes BAYES.json --out results/tables/table2
    alchemy-mbrl report plots score --table1 results/tables/table1.csv --out results/plots/score_vs_expansions
    alchemy-mbrl report plots training --log original=results/models/original/train_log.csv ... --out ...
    alchemy-mbrl report plots hpo --history results/hpo/history.csv --out results/plots/hpo_convergence

    alchemy-mbrl report run-info --name quick --description ... --train-steps 120 --batch-size 16 \
        --episodes learned=16 reference=32 baselines=1000 ideal_observer=10 search_oracle=1000 --out run_info.json

``--out`` is a path prefix without extension: tables get ``.md``, ``.csv``, ``.tex`` and ``.html``;
plots ``.png`` and ``.pdf``. ``--run-info run_info.json`` (written by ``report run-info``) gives the
scale of the run: the workflow passes only it. Without it, ``--scale TEXT`` (the config's name, description and key numbers)
starts every caption and plot title; ``--train-steps``/``--batch-size`` say how long the models
trained (below the paper's 750,000 steps the learned rows are labelled as a reduced-scale model,
and below 1,000 steps as a pipeline check).
"""

from __future__ import annotations

import argparse
import json

from alchemy_mbrl.cli._paths import prefixed, spec_paths
from alchemy_mbrl.io import command_outputs, write_json
from alchemy_mbrl.report import tables
from alchemy_mbrl.report.run_info import make_run_info, read_run_info


def _apply_run_info(args: argparse.Namespace) -> argparse.Namespace:
    """Take the scale line, training steps and batch size from ``--run-info`` when it is given."""
    args.controls = {}
    if getattr(args, "run_info", None):
        info = read_run_info(args.run_info)
        args.scale, args.train_steps, args.batch_size = info["scale"], info["train_steps"], info["batch_size"]
        args.controls = info.get("controls") or {}
    return args


def cmd_run_info(args: argparse.Namespace) -> int:
    """Write run_info.json."""
    episodes = dict(tables.parse_named(s, "episodes") for s in args.episodes)
    try:
        episodes = {k: int(str(v)) for k, v in episodes.items()}
    except ValueError:
        raise ValueError(f"run-info: --episodes takes NAME=INTEGER, got {args.episodes}") from None
    planner: dict[str, object] = {}
    for item in args.planner or []:
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise ValueError(f"run-info: --planner takes KEY=VALUE, got {item!r}")
        try:
            planner[key] = float(value)
        except ValueError:
            planner[key] = value
    seeds: dict[str, list[int]] = {}
    for item in args.train_seeds or []:
        row, sep, listed = str(item).partition("=")
        try:
            seeds[row] = [int(s) for s in listed.split(",")]
        except ValueError:
            raise ValueError(f"run-info: --train-seeds takes ROW=SEED,SEED,..., got {item!r}") from None
        if not sep or not row:
            raise ValueError(f"run-info: --train-seeds takes ROW=SEED,SEED,..., got {item!r}")
    try:
        controls = json.loads(args.controls) if args.controls else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"run-info: --controls takes a JSON object ({exc})") from None
    info = make_run_info(args.name, args.description, args.train_steps, args.batch_size, episodes,
                         tuned_params=not args.table4, planner=planner, train_seeds=seeds, controls=controls)
    write_json(args.out, info)
    print(info["scale"])
    return 0

TABLE_SUFFIXES = (".md", ".csv", ".tex", ".html")


def _check_counts(args: argparse.Namespace) -> None:
    """Argument checks: counts that label the tables and plots must be counts."""
    for flag, minimum in (("train_steps", 0), ("batch_size", 1), ("initial_points", 0)):
        value = getattr(args, flag, None)
        if value is not None and value < minimum:
            raise ValueError(f"--{flag.replace('_', '-')} must be an integer >= {minimum}, got {value}")


PLOT_SUFFIXES = (".png", ".pdf")


def cmd_table1(args: argparse.Namespace) -> int:
    """Build and write Table 1."""
    _apply_run_info(args)
    _check_counts(args)
    with command_outputs(inputs=spec_paths([*args.planner, *args.baseline, *args.optimal, *args.returns]),
                         outputs=prefixed(args.out, TABLE_SUFFIXES)):
        return _table1(args)


def _table1(args: argparse.Namespace) -> int:
    planner = [tables.parse_planner_spec(s) for s in args.planner]
    baselines = dict(tables.parse_named(s, "baseline", tables.BASELINE_LABELS) for s in args.baseline)
    optimal = dict(tables.parse_named(s, "optimal agent", tables.OPTIMAL_LABELS) for s in args.optimal)
    returns = tables.read_returns_by_name(dict(tables.parse_named(s, "returns") for s in args.returns), planner)
    df = tables.build_table1(planner, baselines, train_steps=args.train_steps, optimal=optimal, returns=returns)
    notes = tables.table1_notes(df, args.train_steps, args.batch_size, returns)
    tables.write_table(df, tables.table1_display(df), args.out, tables.TABLE1_CAPTION, "tab:score",
                       scale=args.scale, notes=notes)
    return 0


def cmd_table2(args: argparse.Namespace) -> int:
    """Build and write Table 2."""
    _apply_run_info(args)
    _check_counts(args)
    ins = [*spec_paths([*args.model_eval, *args.control, *args.per_episode]), args.bayes]
    with command_outputs(inputs=ins, outputs=prefixed(args.out, TABLE_SUFFIXES)):
        return _table2(args)


def _table2(args: argparse.Namespace) -> int:
    evals = [tables.parse_model_eval_spec(s) for s in args.model_eval]
    evals += [tables.parse_model_eval_spec(s, control=True) for s in args.control]
    evals = tables.attach_episodes(evals, dict(tables.parse_named(s, "per-episode entropies") for s in args.per_episode))
    labels = {name: ", ".join(f"{k}={v}" for k, v in sorted((c.get("options") or {}).items()))
              for name, c in args.controls.items()}
    df = tables.build_table2(evals, args.bayes, control_labels=labels)
    tables.write_table(df, tables.table2_display(df), args.out, tables.TABLE2_CAPTION, "tab:entropy",
                       scale=args.scale, notes=tables.table2_notes(args.train_steps, args.batch_size, df))
    return 0


def cmd_plots(args: argparse.Namespace) -> int:
    """Draw one figure."""
    _apply_run_info(args)
    _check_counts(args)
    ins = {"score": lambda: [args.table1], "training": lambda: [*spec_paths(args.log), args.bayes],
           "hpo": lambda: [args.history]}[args.plot]()
    with command_outputs(inputs=ins, outputs=prefixed(args.out, PLOT_SUFFIXES)):
        return _plots(args)


def _plots(args: argparse.Namespace) -> int:
    from alchemy_mbrl.report import plots

    if args.plot == "score":
        label = tables.learned_row_label(getattr(args, "train_steps", None)) or None
        plots.plot_score_vs_expansions(args.table1, args.out, scale=args.scale, learned_label=label)
    elif args.plot == "training":
        logs = dict(tables.parse_named(s, "training log") for s in args.log)
        plots.plot_training_curves(logs, args.out, scale=args.scale, bayes=args.bayes)
    else:
        plots.plot_hpo_convergence(args.history, args.out, scale=args.scale, initial_points=args.initial_points)
    return 0


def _scale_args(p: argparse.ArgumentParser, steps: bool = False) -> None:
    p.add_argument("--run-info", default=None, metavar="RUN_INFO_JSON",
                   help="run_info.json written by `report run-info`: the scale line, training steps and batch size "
                   "(replaces --scale, --train-steps, --batch-size)")
    p.add_argument("--scale", default=None,
                   help="one line naming the config (name: description; key numbers), shown on the caption or title")
    if steps:
        p.add_argument("--train-steps", type=int, default=None, help="optimisation steps the world models trained for")
        p.add_argument("--batch-size", type=int, default=None, help="episodes per optimisation step")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report run-info``, ``report table1``, ``report table2`` and ``report plots {score,training,hpo}``."""
    p = subparsers.add_parser("report", help="Tables 1-2 (Markdown, CSV, LaTeX) and plots (PNG, PDF)")
    sub = p.add_subparsers(dest="report_command", metavar="REPORT_COMMAND")
    sub.required = True

    ri = sub.add_parser("run-info", help="write run_info.json: the run's scale as data (read by tables and plots)")
    ri.add_argument("--name", required=True, help="the config's name")
    ri.add_argument("--description", required=True, help="the config's description")
    ri.add_argument("--train-steps", type=int, required=True, help="optimisation steps of the world models")
    ri.add_argument("--batch-size", type=int, required=True, help="episodes per optimisation step")
    ri.add_argument("--episodes", nargs="+", required=True, metavar="NAME=N",
                    help="episodes of learned, reference, baselines, ideal_observer, search_oracle")
    ri.add_argument("--table4", action="store_true", help="the planner plays Table 4's parameters (no HPO)")
    ri.add_argument("--planner", nargs="*", default=[], metavar="KEY=VALUE",
                    help="the workflow config's planner settings (readings of Algorithm 1, reward scale) every "
                         "planner row played with; none = the package's defaults")
    ri.add_argument("--train-seeds", nargs="*", default=[], metavar="ROW=SEED,SEED",
                    help="the training seeds of each of Table 2's rows (the workflow's train.seeds); none = one each")
    ri.add_argument("--controls", default=None, metavar="JSON",
                    help="the workflow's train.controls: {NAME: {architecture, options}}")
    ri.add_argument("--out", required=True, help="the JSON file")
    ri.set_defaults(func=cmd_run_info)

    t1 = sub.add_parser("table1", help="score per planning budget and baselines beside the paper")
    t1.add_argument("--planner", nargs="*", default=[], metavar="SIM:BUDGET=SUMMARY",
                    help="merge-returns summary of a planner evaluation (SIM: learned, bayes, oracle)")
    t1.add_argument("--baseline", nargs="*", default=[], metavar="POLICY=SUMMARY",
                    help="merge-returns summary of a baseline (random-heuristic, uniform)")
    t1.add_argument("--optimal", nargs="*", default=[], metavar="AGENT=SUMMARY",
                    help="merge-returns summary of a measured reference agent (ideal-observer: shown beside Wang et "
                    "al.'s quoted Ideal Observer; search-oracle: beside dm_alchemy's recorded evaluation)")
    t1.add_argument("--returns", nargs="*", default=[], metavar="NAME=RETURNS_CSV",
                    help="per-episode returns of a planner row (NAME = SIM:BUDGET), a baseline or a measured agent: "
                    "each planner row is compared episode by episode (matched by seed and episode) with the random "
                    "heuristic and the ideal observer when their returns are given")
    t1.add_argument("--out", required=True, help="path prefix: writes PREFIX.md, .csv, .tex, .html")
    _scale_args(t1, steps=True)
    t1.set_defaults(func=cmd_table1)

    t2 = sub.add_parser("table2", help="validation entropy per architecture beside the paper")
    t2.add_argument("--model-eval", nargs="+", required=True, metavar="ARCH[@SEED]=JSON",
                    help="model-eval outputs; several seeds of one architecture: one each, the row's main model first")
    t2.add_argument("--control", nargs="*", default=[], metavar="NAME:ARCH[@SEED]=JSON",
                    help="model-eval output of a control (ARCH trained with other options; its own row, labelled)")
    t2.add_argument("--per-episode", nargs="*", default=[], metavar="ROW[@SEED]=CSV",
                    help="model-eval --episodes-out CSV of a model given above: pairs it with the original's")
    t2.add_argument("--bayes", help="bayes-entropy output (the floor row)")
    t2.add_argument("--out", required=True, help="path prefix: writes PREFIX.md, .csv, .tex, .html")
    _scale_args(t2, steps=True)
    t2.set_defaults(func=cmd_table2)

    pl = sub.add_parser("plots", help="figures (PNG and PDF)")
    psub = pl.add_subparsers(dest="plot", metavar="PLOT")
    psub.required = True
    s = psub.add_parser("score", help="score vs expansions (log x), paper's points, baselines")
    s.add_argument("--table1", required=True, help="table1.csv written by `report table1`")
    s.add_argument("--out", required=True, help="path prefix: writes PREFIX.png, PREFIX.pdf")
    _scale_args(s, steps=True)
    s.set_defaults(func=cmd_plots)
    tr = psub.add_parser("training", help="training and validation curves per architecture")
    tr.add_argument("--log", nargs="+", required=True, metavar="ARCH=TRAIN_LOG_CSV")
    tr.add_argument("--out", required=True, help="path prefix: writes PREFIX.png, PREFIX.pdf")
    tr.add_argument("--bayes", default=None, help="bayes-entropy output: draws the Bayes-optimal floor")
    _scale_args(tr)
    tr.set_defaults(func=cmd_plots)
    h = psub.add_parser("hpo", help="HPO convergence: trial scores and best so far")
    h.add_argument("--history", required=True, help="history CSV written by `hpo best`")
    h.add_argument("--out", required=True, help="path prefix: writes PREFIX.png, PREFIX.pdf")
    h.add_argument("--initial-points", type=int, default=None,
                   help="random points before the GP surrogate is used (hpo.initial_points): titles the plot truly")
    _scale_args(h)
    h.set_defaults(func=cmd_plots)
