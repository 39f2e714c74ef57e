# Shared names, paths and helpers of the workflow. (No rules are defined in this file.)
#
# All paths under results/ (outputs), logs/ (one log per job) and benchmarks/ (one
# benchmark TSV per job). Seeds: data from `seed`; HPO point (r, p) evaluates episodes of
# seed hpo.eval_seed + 1000 r + p; final evaluations use evaluate.seed; baselines
# baselines.seed. Episodes are keyed by (seed, episode index), so different seeds give
# disjoint episode streams.

import json
import os

ENV = "../envs/alchemy.yaml"
# Each job runs this checkout's package: `python -m alchemy_mbrl.cli` with the workflow's
# src/ first on PYTHONPATH (so it also works inside the dependency-only conda env).
SRC = os.path.join(workflow.basedir, "src")
CLI = f"PYTHONPATH={SRC}${{PYTHONPATH:+:$PYTHONPATH}} python -m alchemy_mbrl.cli"

NUM_SHARDS = config["data"]["shards"]
SHARDS = [f"{i:04d}" for i in range(NUM_SHARDS)]
ARCHS = list(config["train"]["architectures"])
HPO_ROUNDS = config["hpo"]["rounds"]
HPO_POINTS = config["hpo"]["points_per_round"]
BUDGETS = list(config["evaluate"]["budgets"])
CHUNKS = config["evaluate"]["chunks"]
REFERENCE_SIMS = list(config["evaluate"]["reference_simulators"])
REFERENCE_BUDGETS = list(config["evaluate"]["reference_budgets"])
BASELINES = list(config["baselines"]["policies"])
GPU = 1 if config["use_gpu"] else 0
MANIFEST = "results/data/manifest.json"

# Cross-field checks of the config: alchemy_mbrl.workflow_config.validate_workflow_config (Snakefile).


def model_dir(arch):
    """Directory of the trained model of ``arch`` (model.pt, train_log.csv, checkpoints)."""
    return f"results/models/{arch}"


def train_config(arch):
    """The YAML overrides given to `alchemy-mbrl train --config` for ``arch``."""
    return train_overrides(config, arch)


def planner_model_inputs(simulator, arch):
    """The learned simulator needs the trained model; bayes and oracle need nothing."""
    return [f"{model_dir(arch)}/model.pt"] if simulator == "learned" else []


def planner_model_arg(simulator, arch):
    return f"--model {model_dir(arch)}" if simulator == "learned" else ""


def max_episodes_arg():
    """`--max-episodes N` of model-eval and bayes-entropy (all validation episodes when null)."""
    n = config["train"]["eval_max_episodes"]
    return "" if n is None else f"--max-episodes {n}"


def hpo_eval_seed(round, point):
    """Seed of the episodes of HPO point ``point`` of round ``round`` (disjoint per point)."""
    return config["hpo"]["eval_seed"] + 1000 * int(round) + int(point)


def hpo_state_in(wildcards):
    r = int(wildcards.round)
    return [] if r == 0 else [f"results/hpo/round-{r - 1}/state.pkl"]


def hpo_space_args():
    s = config["hpo"]["space"]
    args = [f"--{name} {s[name][0]} {s[name][1]}" for name in ("temperature", "c1", "c2", "k")]
    if s.get("log_scale"):
        args.append("--log-scale " + " ".join(s["log_scale"]))
    return " ".join(args)


def planner_runs():
    """(simulator, budget) pairs of Table 1's planner rows."""
    runs = [("learned", b) for b in BUDGETS]
    runs += [(s, b) for s in REFERENCE_SIMS for b in REFERENCE_BUDGETS]
    return runs


def summary_path(simulator, budget):
    return f"results/eval/{simulator}/budget-{budget}/summary.json"


def final_outputs():
    """Targets of the default target: tables, plots and the tuned hyperparameters."""
    out = expand("results/tables/{table}.{ext}", table=["table1", "table2"], ext=["md", "csv", "tex"])
    out += expand(
        "results/plots/{plot}.{ext}",
        plot=["score_vs_expansions", "training_curves", "hpo_convergence"],
        ext=["png", "pdf"],
    )
    out += ["results/hpo/best.json", "results/hpo/history.csv"]
    return out


def mem_mb(base):
    """Memory request growing with the attempt: base, 2 base, 4 base, ... (MB)."""
    return lambda wildcards, attempt: base * 2 ** (attempt - 1)
