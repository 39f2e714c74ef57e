# Shared names, paths and helpers of the workflow. (No rules are defined in this file.)
#
# Each config writes into its own folders, named by its `name` key: results/<name>/ (outputs),
# logs/<name>/ (one log per job) and benchmarks/<name>/ (one benchmark TSV per job), so a
# paper-scale run never touches the quick scale's results (and vice versa). Seeds: data from `seed`; HPO point (r, p) evaluates episodes of
# seed hpo.eval_seed + 1000 r + p; final evaluations use evaluate.seed; baselines and the
# optimal agents (ideal observer, search oracle) baselines.seed, so that they play the same
# episodes (paired). Episodes are keyed by (seed, episode index), so different seeds give
# disjoint episode streams.

import json
import os
import shlex

ENV = "../envs/alchemy.yaml"
# Each job runs this checkout's package: the shell prefix puts the workflow's src/ (SRC, the Snakefile's) first on
# PYTHONPATH and defines `alchemy-mbrl` as `python -m alchemy_mbrl.cli` (so it also works inside the
# dependency-only conda env, where the console script is not installed), and every rule's shell reads
# like the documented command line. The checkout's absolute path goes into the shell prefix, not into
# any rule's params: Snakemake reruns a job whose params changed, and a finished run moved to another
# directory must have nothing to do.
# (Snakemake formats the prefix like a command: its braces are doubled once more.)
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH={SRC}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    'alchemy-mbrl() {{ python -m alchemy_mbrl.cli "$@"; }}; '
)

NAME = config["name"]
OUT = f"results/{NAME}"
LOGS = f"logs/{NAME}"
BENCH = f"benchmarks/{NAME}"

NUM_SHARDS = config["data"]["shards"]
SHARDS = [f"{i:04d}" for i in range(NUM_SHARDS)]
ARCHS = list(config["train"]["architectures"])
HPO_ROUNDS = config["hpo"]["rounds"]
HPO_POINTS = config["hpo"]["points_per_round"]
BUDGETS = list(config["evaluate"]["budgets"])
# Learned-model budgets too long for the default target: played only by the target all_long (table1_long).
LONG_BUDGETS = list(config["evaluate"].get("long_budgets") or [])
CHUNKS = config["evaluate"]["chunks"]
REFERENCE_SIMS = list(config["evaluate"]["reference_simulators"])
REFERENCE_BUDGETS = list(config["evaluate"]["reference_budgets"])
# Reference rows play their own number of episodes (default: evaluate.episodes) and use either
# the tuned parameters (results/<name>/hpo/best.json) or Table 4's (the package defaults).
REFERENCE_EPISODES = config["evaluate"].get("reference_episodes") or config["evaluate"]["episodes"]
REFERENCE_PARAMS = config["evaluate"].get("reference_params", "tuned")
# The learned-model rows plan with the tuned parameters (default) or Table 4's (evaluate.params).
# When no row uses the tuned parameters, the HPO is not run (no hpo/ outputs, no HPO plot).
LEARNED_PARAMS = config["evaluate"].get("params", "tuned")
RUN_HPO = LEARNED_PARAMS == "tuned" or (bool(REFERENCE_SIMS) and REFERENCE_PARAMS == "tuned")
BASELINES = list(config["baselines"]["policies"])
# Table 1's measured reference agents: `evaluate --policy` name -> {episodes, chunks} of optimal_agents
# (an agent with 0 episodes is not played and has no row).
OPTIMAL_AGENTS = {
    agent: run
    for agent, run in (
        ("ideal-observer", config["optimal_agents"]["ideal_observer"]),
        ("search-oracle", config["optimal_agents"]["search_oracle"]),
    )
    if run["episodes"] > 0
}
GPU = 1 if config["use_gpu"] else 0
MANIFEST = f"{OUT}/data/manifest.json"

# Cross-field checks of the config: alchemy_mbrl.workflow_config.validate_workflow_config (Snakefile).


def model_dir(arch):
    """Directory of the trained model of ``arch`` (model.pt, train_log.csv, checkpoints): an architecture's own
    model (the top-level seed), or an extra model's name ``<arch>-<variant>`` (MODELS)."""
    return f"{OUT}/models/{arch}"


def train_config(arch):
    """The YAML overrides given to `alchemy-mbrl train --config` for ``arch``."""
    return train_overrides(config, arch)


# Every world model (alchemy_mbrl.workflow_config.trained_models): each architecture's own model (the top-level
# seed, models/<arch>/: the path of a run without train.seeds or train.controls), the extra training seeds
# (models/<arch>-seed-<s>/) and the controls (models/<arch>-<control>[-seed-<s>]/), trained by rule train_variant.
MODELS = trained_models(config)
EXTRA_MODELS = {m.name: m for m in MODELS if m.variant}


def variant_model(arch, variant):
    """The extra model ``<arch>-<variant>`` (a name the config does not train is an error)."""
    name = f"{arch}-{variant}"
    if name not in EXTRA_MODELS:
        raise WorkflowError(f"{name}: not a model of this config (train.seeds, train.controls)")
    return EXTRA_MODELS[name]


def variant_train_config(arch, variant):
    """The `train --config` overrides of the extra model ``<arch>-<variant>``."""
    return model_overrides(config, variant_model(arch, variant))


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
    return [] if r == 0 else [f"{OUT}/hpo/round-{r - 1}/state.pkl"]


def hpo_space_args():
    s = config["hpo"]["space"]
    args = [f"--{name} {s[name][0]} {s[name][1]}" for name in ("temperature", "c1", "c2", "k")]
    if s.get("log_scale"):
        args.append("--log-scale " + " ".join(s["log_scale"]))
    return " ".join(args)


def planner_runs(long=False):
    """(simulator, budget) pairs of Table 1's planner rows (``long``: with evaluate.long_budgets, the target all_long)."""
    runs = [("learned", b) for b in BUDGETS + (LONG_BUDGETS if long else [])]
    runs += [(s, b) for s in REFERENCE_SIMS for b in REFERENCE_BUDGETS]
    return runs


def eval_episodes(simulator):
    """Episodes of a (simulator, budget) row: the reference rows may play more than the learned rows."""
    return config["evaluate"]["episodes"] if simulator == "learned" else REFERENCE_EPISODES


def uses_tuned_params(simulator):
    return (LEARNED_PARAMS if simulator == "learned" else REFERENCE_PARAMS) == "tuned"


def planner_params_inputs(simulator):
    """The tuned parameters, unless this row plays with Table 4's (evaluate.reference_params)."""
    return [f"{OUT}/hpo/best.json"] if uses_tuned_params(simulator) else []


# The config's `planner` mapping (readings of Algorithm 1, reward scale; empty = the package's
# defaults), as `--param KEY=VALUE` of every planner evaluation: learned and reference rows, HPO points.
PLANNER_ARGS = " ".join(f"--param {s}" for s in planner_settings(config))


def planner_params_arg(simulator):
    """`--params` of the tuned parameters (unless Table 4's), then the config's `planner` readings."""
    tuned = f"--params {OUT}/hpo/best.json" if uses_tuned_params(simulator) else ""
    return " ".join(filter(None, [tuned, PLANNER_ARGS]))


RUN_INFO = f"{OUT}/run_info.json"


def run_info_episodes():
    """`--episodes` of `report run-info`: the episodes each kind of row plays."""
    o = config["optimal_agents"]
    counts = {
        "learned": config["evaluate"]["episodes"],
        "reference": REFERENCE_EPISODES if REFERENCE_SIMS else 0,
        "baselines": config["baselines"]["episodes"],
        "ideal_observer": o["ideal_observer"]["episodes"],
        "search_oracle": o["search_oracle"]["episodes"],
    }
    return " ".join(f"{k}={v}" for k, v in counts.items())


EVAL_ARCH = config["evaluate"]["architecture"]
HPO_ARCH = config["hpo"]["architecture"]
HPO_SIM = config["hpo"]["simulator"]


# The arguments of `evaluate` (every rule that plays episodes shares one shell command, `use rule`).
def planner_chunk_args(simulator, budget, chunk):
    """A chunk of a (simulator, budget) row of Table 1."""
    return (
        f"--policy planner --simulator {simulator} {planner_model_arg(simulator, EVAL_ARCH)} --budget {budget}"
        f" --episodes {eval_episodes(simulator)} --chunk {chunk}/{CHUNKS} --seed {config['evaluate']['seed']}"
        f" {planner_params_arg(simulator)}"
    )


def hpo_point_args(round, point, params):
    """HPO point ``point`` of round ``round``, its parameters read from the JSON file ``params``."""
    h = config["hpo"]
    return (
        f"--policy planner --simulator {HPO_SIM} {planner_model_arg(HPO_SIM, HPO_ARCH)} --budget {h['budget']}"
        f" --episodes {h['episodes']} --chunk 0/1 --seed {hpo_eval_seed(round, point)} --params {params} {PLANNER_ARGS}"
    )


def baseline_args(policy):
    """A baseline policy on all of its episodes (seed baselines.seed)."""
    b = config["baselines"]
    return f"--policy {policy} --episodes {b['episodes']} --seed {b['seed']}"


def agent_chunk_args(agent, chunk):
    """A chunk of an optimal agent's episodes (the baselines' seed: paired with them)."""
    run, seed = OPTIMAL_AGENTS[agent], config["baselines"]["seed"]
    return f"--policy {agent} --episodes {run['episodes']} --chunk {chunk}/{run['chunks']} --seed {seed}"


def hpo_ask_args(state_in, asked):
    """`hpo ask` options of a round: the previous round's state (none at round 0), the config's hpo
    section, the round's folder (that of its asked.pkl)."""
    h = config["hpo"]
    return (
        f"--state-in {state_in[0] if state_in else 'none'} --points {HPO_POINTS} --seed {h['seed']}"
        f" --initial-points {h['initial_points']} --acq-func {h['acq_func']} --acq-optimizer {h['acq_optimizer']}"
        f" {hpo_space_args()} --gamma {h['gamma']} --out-dir {os.path.dirname(asked)}"
    )


def shard_args(shard):
    """`generate` options of shard ``shard`` (its episodes come from (seed, shard))."""
    d = config["data"]
    return (
        f"--shard {int(shard)} --num-shards {NUM_SHARDS} --episodes {d['episodes_per_shard']} --seed {config['seed']}"
    )


def table1_summaries(long=False):
    """Table 1's inputs: the summaries of the planner rows, the baselines and the optimal agents."""
    return (
        [summary_path(s, b) for s, b in planner_runs(long)]
        + [f"{OUT}/baselines/{p}/summary.json" for p in BASELINES]
        + [optimal_summary_path(a) for a in OPTIMAL_AGENTS]
    )


def table1_returns(long=False):
    """The per-episode returns of Table 1's rows (``--returns``: the paired comparisons), by row name."""
    out = {f"{s}:{b}": f"{OUT}/eval/{s}/budget-{b}/returns.csv" for s, b in planner_runs(long)}
    out.update({p: f"{OUT}/baselines/{p}/merged.csv" for p in BASELINES})
    out.update({a: f"{OUT}/optimal_agents/{a}/returns.csv" for a in OPTIMAL_AGENTS})
    return out


def table1_args(long=False):
    """`report table1` arguments: the planner rows, baselines and optimal agents' summaries and returns."""
    return (
        f"table1 --planner {named({f'{s}:{b}': summary_path(s, b) for s, b in planner_runs(long)})}"
        f" --baseline {named({p: f'{OUT}/baselines/{p}/summary.json' for p in BASELINES})}"
        f" --optimal {named({a: optimal_summary_path(a) for a in OPTIMAL_AGENTS})}"
        f" --returns {named(table1_returns(long))}"
    )


def per_arch(path):
    """``ARCH=PATH`` of every trained architecture; ``path``, under results/<name>/, has ``{a}`` where the
    architecture goes."""
    return named({a: f"{OUT}/{path.format(a=a)}" for a in ARCHS})


def model_eval_path(model, ext="json"):
    """`model-eval`'s record (json) or per-episode entropies (csv) of a model (MODELS)."""
    return f"{OUT}/model_eval/{model.name}.{ext}"


def table2_inputs():
    return [model_eval_path(m, e) for m in MODELS for e in ("json", "csv")]


def table2_args():
    """`report table2` arguments: every model's record (ROW@SEED; a control as NAME:ARCH@SEED), its per-episode
    entropies and the Bayes-optimal floor. Each row's first model is its top-level seed's (MODELS' order)."""
    archs = {f"{m.arch}@{m.seed}": model_eval_path(m) for m in MODELS if m.control is None}
    controls = {f"{m.control}:{m.arch}@{m.seed}": model_eval_path(m) for m in MODELS if m.control}
    episodes = {f"{m.row}@{m.seed}": model_eval_path(m, "csv") for m in MODELS}
    return (
        f"table2 --model-eval {named(archs)}"
        + (f" --control {named(controls)}" if controls else "")
        + f" --per-episode {named(episodes)} --bayes {OUT}/model_eval/bayes.json"
    )


def run_info_args():
    """`report run-info` options: the run's scale (the config's name, description, training, episodes,
    whether an HPO chose the parameters, the planner's readings)."""
    planner = planner_settings(config)
    by_row = {}
    for m in MODELS:
        by_row.setdefault(m.row, []).append(str(m.seed))
    seeds = [f"{row}={','.join(s)}" for row, s in by_row.items()] if any(len(s) > 1 for s in by_row.values()) else []
    controls = config["train"].get("controls") or {}
    return " ".join(
        [
            f"--name {shlex.quote(NAME)} --description {shlex.quote(config['description'])}",
            f"--train-steps {config['train']['steps']} --batch-size {config['train']['batch_size']}",
            f"--episodes {run_info_episodes()}",
            *(["--train-seeds", *seeds] if seeds else []),
            *(["--controls", shlex.quote(json.dumps(controls, sort_keys=True))] if controls else []),
            *([] if RUN_HPO else ["--table4"]),
            *(["--planner", *planner] if planner else []),
        ]
    )


def named(paths):
    """``NAME=PATH`` arguments of the report commands, from a ``{name: path}`` mapping."""
    return " ".join(f"{name}={path}" for name, path in paths.items())


def report_prefix(wildcards, output):
    """`--out` of a report command: its first output without the extension."""
    return os.path.splitext(output[0])[0]


def summary_path(simulator, budget):
    return f"{OUT}/eval/{simulator}/budget-{budget}/summary.json"


def optimal_summary_path(agent):
    return f"{OUT}/optimal_agents/{agent}/summary.json"


def optimal_chunks(agent):
    """The chunk CSVs of an optimal agent (optimal_agents.<agent>.chunks jobs)."""
    n = OPTIMAL_AGENTS[agent]["chunks"]
    return [f"{OUT}/optimal_agents/{agent}/chunk-{i}.csv" for i in range(n)]


def final_outputs(long=False):
    """Targets of the default target: tables, plots, the tuned hyperparameters (when a row uses them) and the
    optimal agents' summaries; ``long`` (the target all_long): also Table 1 and its plot with evaluate.long_budgets."""
    out = expand(f"{OUT}/tables/{{table}}.{{ext}}", table=["table1", "table2"], ext=["md", "csv", "tex"])
    plots = ["score_vs_expansions", "training_curves"] + (["hpo_convergence"] if RUN_HPO else [])
    out += expand(f"{OUT}/plots/{{plot}}.{{ext}}", plot=plots, ext=["png", "pdf"])
    if long:
        out += expand(f"{OUT}/tables/table1_long.{{ext}}", ext=["md", "csv", "tex"])
        out += expand(f"{OUT}/plots/score_vs_expansions_long.{{ext}}", ext=["png", "pdf"])
    if RUN_HPO:
        out += [f"{OUT}/hpo/best.json", f"{OUT}/hpo/history.csv"]
    out += [optimal_summary_path(a) for a in OPTIMAL_AGENTS]
    return out


def report_of(path, caption, category, **labels):
    """``path`` in the HTML report: caption workflow/report/<caption>.rst, labelled with this scale."""
    return report(path, caption=f"../report/{caption}.rst", category=category, labels={"scale": NAME, **labels})


def mem_mb(base):
    """Memory request growing with the attempt: base, 2 base, 4 base, ... (MB)."""
    return lambda wildcards, attempt: base * 2 ** (attempt - 1)
