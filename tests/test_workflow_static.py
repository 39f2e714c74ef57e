"""The workflow without running jobs: lint, DAG shape at paper scale, config schema, environments, profiles."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.workflow_support import (
    CPU_CONFIG,
    PAPER_CONFIG,
    QUICK_CONFIG,
    REPO,
    SLURM_PROFILE,
    TEST_CONFIG,
    snakemake,
    snakemake_exe,
    workflow_rules,
    workflow_rules_text,
)

pytestmark = pytest.mark.skipif(snakemake_exe() is None, reason="snakemake is not installed (pip install -e '.[dev]')")


#: The rules only the target all_long runs (evaluate.long_budgets: Table 1 and its plot with the long rows).
LONG_RULES = {"table1_long", "plot_score_long", "all_long"}


def job_counts(stdout: str) -> dict[str, int]:
    """``rule -> jobs`` from the job-stats table of ``snakemake -n --quiet rules``."""
    counts: dict[str, int] = {}
    for line in stdout.splitlines():
        m = re.fullmatch(r"\s*([A-Za-z_][\w]*)\s+(\d+)\s*", line)
        if m and m.group(1) not in ("job", "count"):
            counts[m.group(1)] = int(m.group(2))
    return counts


def test_lint_is_clean(tmp_path: Path) -> None:
    r = snakemake(["--lint"], tmp_path, config=QUICK_CONFIG)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Lints for" not in r.stdout + r.stderr


def expected_job_counts(cfg: dict) -> dict[str, int]:
    """``rule -> jobs`` that a fresh run of config ``cfg`` must plan (every rule; ``total`` excluded)."""
    ev, hpo = cfg["evaluate"], cfg["hpo"]
    archs = len(cfg["train"]["architectures"])
    from alchemy_mbrl.workflow_config import trained_models

    extra = sum(bool(m.variant) for m in trained_models(cfg))  # train.seeds beyond the first, train.controls
    planner_rows = len(ev["budgets"]) + len(ev["reference_simulators"]) * len(ev["reference_budgets"])
    agents = cfg["optimal_agents"]
    counts = {
        "generate_shard": cfg["data"]["shards"], "manifest": 1,
        "train_config": archs, "train": archs, "model_eval": archs, "bayes_entropy": 1,
        "hpo_ask": hpo["rounds"], "hpo_evaluate": hpo["rounds"] * hpo["points_per_round"],
        "hpo_summary": hpo["rounds"] * hpo["points_per_round"], "hpo_tell": hpo["rounds"], "hpo_best": 1,
        "evaluate_learned_chunk": len(ev["budgets"]) * ev["chunks"],
        "evaluate_reference_chunk": (planner_rows - len(ev["budgets"])) * ev["chunks"], "merge_evaluation": planner_rows,
        "baseline": len(cfg["baselines"]["policies"]), "baseline_summary": len(cfg["baselines"]["policies"]),
        "optimal_agent_chunk": sum(a["chunks"] for a in agents.values() if a["episodes"] > 0),
        "optimal_agent_summary": sum(a["episodes"] > 0 for a in agents.values()),
        "run_info": 1, "table1": 1, "table2": 1, "plot_score": 1, "plot_training": 1, "plot_hpo": 1, "all": 1,
    }
    if extra:
        counts.update(train_config_variant=extra, train_variant=extra, model_eval_variant=extra)
    tuned = ev.get("params", "tuned") == "tuned" or (
        ev["reference_simulators"] and ev.get("reference_params", "tuned") == "tuned")
    if not tuned:  # no row plans with the HPO's parameters: the HPO is not run
        for rule in ("hpo_ask", "hpo_evaluate", "hpo_summary", "hpo_tell", "hpo_best", "plot_hpo"):
            del counts[rule]
    return counts


def test_paper_config_builds_full_dag(tmp_path: Path) -> None:
    """The paper's numbers: 100 shards, 4 architectures, 8x8 HPO trials, 6 budgets x 3 simulators (learned,
    exact Bayesian model, true chemistry: the perfect-model rows at every budget) x 10 chunks, the ideal
    observer in 20 chunks and the search oracle in one."""
    r = snakemake(["-n", "--quiet", "rules"], tmp_path, config=PAPER_CONFIG)
    assert r.returncode == 0, r.stdout + r.stderr
    counts = job_counts(r.stdout)
    cfg = yaml.safe_load(PAPER_CONFIG.read_text())
    rounds, points = cfg["hpo"]["rounds"], cfg["hpo"]["points_per_round"]
    planner_rows = len(cfg["evaluate"]["budgets"]) + len(cfg["evaluate"]["reference_simulators"]) * len(
        cfg["evaluate"]["reference_budgets"]
    )
    expected = {
        "generate_shard": 100,
        "manifest": 1,
        "train_config": 4,
        "train": 4,
        "model_eval": 4,
        "bayes_entropy": 1,
        "hpo_ask": rounds,
        "hpo_evaluate": rounds * points,
        "hpo_summary": rounds * points,
        "hpo_tell": rounds,
        "hpo_best": 1,
        "evaluate_learned_chunk": len(cfg["evaluate"]["budgets"]) * cfg["evaluate"]["chunks"],
        "evaluate_reference_chunk": (planner_rows - len(cfg["evaluate"]["budgets"])) * cfg["evaluate"]["chunks"],
        "merge_evaluation": planner_rows,
        "baseline": 2,
        "baseline_summary": 2,
        "optimal_agent_chunk": 100 + 1,
        "optimal_agent_summary": 2,
        "run_info": 1,
        "table1": 1,
        "table2": 1,
        "plot_score": 1,
        "plot_training": 1,
        "plot_hpo": 1,
        "all": 1,
    }
    assert counts.pop("total") == sum(expected.values()) == 571
    assert counts == expected == expected_job_counts(cfg)
    assert planner_rows == 18 and cfg["evaluate"]["chunks"] == 10
    assert counts["evaluate_learned_chunk"] + counts["evaluate_reference_chunk"] == 180
    assert counts["merge_evaluation"] == 18


def test_paper_config_matches_paper() -> None:
    """The numbers the paper gives (Tables 1, 3 and Appendix A) are those of config/paper.yaml."""
    cfg = yaml.safe_load(PAPER_CONFIG.read_text())
    assert cfg["data"]["shards"] * cfg["data"]["episodes_per_shard"] == 1_000_000
    assert cfg["train"]["steps"] == 750_000 and cfg["train"]["batch_size"] == 250
    assert cfg["hpo"]["budget"] == 1250
    assert cfg["evaluate"]["budgets"] == [100, 500, 1250, 2500, 5000, 10000]
    assert cfg["evaluate"]["episodes"] == 250
    # the perfect-model planner rows (exact Bayesian model, true chemistry) at every Table 1 budget
    assert cfg["evaluate"]["reference_budgets"] == cfg["evaluate"]["budgets"]
    assert cfg["evaluate"]["reference_simulators"] == ["bayes", "oracle"]
    # the measured reference agents on at least 1,000 of the baselines' episodes
    agents = cfg["optimal_agents"]
    assert agents["ideal_observer"]["episodes"] >= 1000 and agents["search_oracle"]["episodes"] >= 1000


def test_paper_reference_rows_fit_in_memory() -> None:
    """The perfect-model rows at 10,000 expansions: the search trees of one chunk (its episodes in one
    lockstep batch, K at the top of the HPO's range) fit far below the rule's memory."""
    from alchemy_mbrl.planner.tree_search import search_bytes
    from alchemy_mbrl.simulators.bayes import BayesSimulator
    from alchemy_mbrl.simulators.oracle import OracleSimulator

    ev = yaml.safe_load(PAPER_CONFIG.read_text())["evaluate"]
    k = yaml.safe_load(PAPER_CONFIG.read_text())["hpo"]["space"]["k"][1]
    # the reference rows' memory: the base of rule evaluate_reference_chunk (MB, first attempt)
    text = (REPO / "workflow" / "rules" / "evaluate.smk").read_text()
    block = text[text.index("as evaluate_reference_chunk with:"):].split("\n\n\n")[0]
    mem_mb = int(re.search(r"mem_mb=mem_mb\((\d+)\)", block).group(1))
    batch = -(-(ev["reference_episodes"] or ev["episodes"]) // ev["chunks"])
    for sim in (BayesSimulator(), OracleSimulator()):
        trees = search_bytes(max(ev["reference_budgets"]), k, sim.node_bytes) * batch
        stored = getattr(sim, "store_bytes", 0)  # the exact Bayesian model's stored posteriors, at most
        assert trees + stored < 0.1 * mem_mb * 2**20, (sim.name, trees)


@pytest.mark.parametrize("config", [QUICK_CONFIG, TEST_CONFIG])
def test_small_configs_build_every_rule(tmp_path: Path, config: Path) -> None:
    r = snakemake(["-n", "--quiet", "rules"], tmp_path, config=config)
    assert r.returncode == 0, r.stdout + r.stderr
    counts = job_counts(r.stdout)
    rules = workflow_rules() - LONG_RULES  # the target all_long's own
    assert rules <= set(counts), f"rules without a job: {rules - set(counts)}"
    total = counts.pop("total")
    assert counts == expected_job_counts(yaml.safe_load(config.read_text()))
    if config == QUICK_CONFIG:  # ideal observer on 10 episodes in 2 chunks, search oracle 1,000 in 1 chunk
        assert (counts["optimal_agent_chunk"], counts["optimal_agent_summary"], total) == (3, 2, 77)


def test_cpu_config_builds_its_dag(tmp_path: Path) -> None:
    """config/cpu.yaml (the 3-hour CPU run of issue 16): the schema and the package's checks accept it; its
    DAG has the exact job counts below: 11 shards, the four architectures, no HPO (every planner row uses
    Table 4's parameters), learned + exact-Bayes + true-chemistry rows at 3 budgets in 2 chunks each, the
    two baselines and the search oracle (the ideal observer is not played)."""
    cfg = yaml.safe_load(CPU_CONFIG.read_text())
    from alchemy_mbrl.workflow_config import validate_workflow_config

    validate_workflow_config(cfg, REPO / "workflow" / "schemas" / "config.schema.yaml")
    r = snakemake(["-n", "--quiet", "rules"], tmp_path, config=CPU_CONFIG)
    assert r.returncode == 0, r.stdout + r.stderr
    counts = job_counts(r.stdout)
    expected = {
        "generate_shard": 11, "manifest": 1, "train_config": 4, "train": 4, "model_eval": 4, "bayes_entropy": 1,
        # issue 27: 3 seeds of original and no_gru_head, 2 of gru_backbone and no_final_linear, one control
        "train_config_variant": 7, "train_variant": 7, "model_eval_variant": 7,
        "evaluate_learned_chunk": 8, "evaluate_reference_chunk": 20, "merge_evaluation": 14, "baseline": 2,
        "baseline_summary": 2, "optimal_agent_chunk": 3, "optimal_agent_summary": 2, "run_info": 1,
        "table1": 1, "table2": 1, "plot_score": 1, "plot_training": 1, "all": 1,
    }
    assert counts.pop("total") == sum(expected.values()) == 103
    assert counts == expected == expected_job_counts(cfg)
    # the target all_long: the learned row at 1,250 too (2 chunks, a merge, Table 1 and its plot again)
    r = snakemake(["--quiet", "rules", "-n", "all_long"], tmp_path, config=CPU_CONFIG)
    assert r.returncode == 0, r.stdout + r.stderr
    long = job_counts(r.stdout)
    assert long.pop("total") == 108
    assert long == {**{k: v for k, v in expected.items() if k != "all"}, "evaluate_learned_chunk": 10,
                    "merge_evaluation": 15, "table1_long": 1, "plot_score_long": 1, "all_long": 1}
    # what issue 16 asks of it
    assert cfg["name"] == "cpu" and cfg["data"]["episodes_per_shard"] * (
        cfg["data"]["shards"] - cfg["data"]["validation_shards"]) >= 100_000
    assert cfg["train"]["architectures"] == ["original", "gru_backbone", "no_gru_head", "no_final_linear"]
    assert cfg["train"]["max_seconds"] is None  # equal compute: steps x batch
    assert "threads" not in cfg["train"] and "threads" not in cfg["evaluate"]  # 1 thread per job: no profile
    ev = cfg["evaluate"]
    assert ev["params"] == ev["reference_params"] == "table4"
    # issue 27: planner rows to 1,250 expansions for all three simulators (the learned one in all_long)
    assert ev["budgets"] + ev["long_budgets"] == ev["reference_budgets"] == [60, 120, 240, 500, 1250]
    assert ev["episodes"] >= 64 and (ev["reference_episodes"] or ev["episodes"]) == ev["episodes"]
    # the ideal observer and the random heuristic on the planner rows' episodes (seed 3, 0..63): paired
    assert ev["seed"] == cfg["baselines"]["seed"]
    assert cfg["optimal_agents"]["ideal_observer"]["episodes"] == ev["episodes"] <= cfg["baselines"]["episodes"]
    seeds = cfg["train"]["seeds"]
    assert len(seeds["original"]) >= 3 and len(seeds["no_gru_head"]) >= 3
    assert all(len(seeds[a]) >= 2 for a in cfg["train"]["architectures"])
    control = cfg["train"]["controls"]["original_lr"]  # no_final_linear at the original's lr
    assert control["architecture"] == "no_final_linear" and control["options"]["lr"] == cfg["train"]["options"]["lr"]
    assert cfg["optimal_agents"]["search_oracle"]["episodes"] == cfg["baselines"]["episodes"]
    from alchemy_mbrl.model.config import resolve_config
    from alchemy_mbrl.workflow_config import train_overrides

    m = {a: resolve_config(a, train_overrides(cfg, a)) for a in cfg["train"]["architectures"]}
    base, t = m["original"]
    assert (base.n_layers, base.n_heads, base.d_ff, base.obs_context) == (3, 4, base.d_model, base.d_model)
    assert base.mlp_hidden == base.gru_backbone_hidden == 2 * base.d_model
    # the sizes the recorded runs trained (inherited from the quick config before the Snakefile stopped merging a
    # --configfile into it; docs/results-cpu.md): observation GRU head 16 (Table 3: 32), 1-layer GRU backbone (3)
    assert (base.gru_hidden, m["gru_backbone"][0].gru_backbone_layers) == (16, 1)
    assert t.lr_schedule == "cosine" and 0 < t.warmup_steps < t.steps
    # the ablations differ from the original only as Table 2's caption says (the lr of no_final_linear / 5)
    assert m["gru_backbone"][0].backbone == "gru" and m["no_gru_head"][0].obs_head == "independent"
    assert (m["no_final_linear"][0].obs_head, m["no_final_linear"][0].gru_hidden) == ("gru_only", 32)  # caption: 64
    assert m["no_final_linear"][1].lr == pytest.approx(t.lr / 5)
    for arch, (mc, tc) in m.items():
        assert (tc.steps, tc.batch_size, tc.warmup_steps, tc.lr_schedule) == (t.steps, t.batch_size, t.warmup_steps,
                                                                               t.lr_schedule), arch
        assert (mc.d_model, mc.n_layers, mc.mlp_hidden) == (base.d_model, base.n_layers, base.mlp_hidden), arch
    # no planner row reads hpo/best.json: every row plays with Table 4's parameters
    p = snakemake(["-n", "-p"], tmp_path, config=CPU_CONFIG)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "--params" not in p.stdout + p.stderr and "hpo" not in (p.stdout + p.stderr).replace("no HPO", "")


def test_optimal_agents_play_the_baselines_episodes(tmp_path: Path) -> None:
    """Each optimal agent's chunks cover its episodes with the baselines' seed (paired with them), and
    Table 1 gets both summaries."""
    r = snakemake(["-n", "-p"], tmp_path, config=PAPER_CONFIG)
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = yaml.safe_load(PAPER_CONFIG.read_text())
    seed = cfg["baselines"]["seed"]
    for agent, key in (("ideal-observer", "ideal_observer"), ("search-oracle", "search_oracle")):
        n, chunks = cfg["optimal_agents"][key]["episodes"], cfg["optimal_agents"][key]["chunks"]
        cmds = re.findall(rf"evaluate --policy {agent} (.*?) > ", r.stdout + r.stderr)
        assert sorted(cmds) == sorted(
            f"--episodes {n} --chunk {i}/{chunks} --seed {seed} --out results/paper/optimal_agents/{agent}/chunk-{i}.csv"
            " --no-progress" for i in range(chunks)
        )
    assert ("--optimal ideal-observer=results/paper/optimal_agents/ideal-observer/summary.json"
            " search-oracle=results/paper/optimal_agents/search-oracle/summary.json") in r.stdout + r.stderr


    # an agent with 0 episodes (the test scale's ideal observer) is not played and has no row
    small = snakemake(["-n", "-p"], tmp_path, config=TEST_CONFIG)
    assert small.returncode == 0, small.stdout + small.stderr
    name = yaml.safe_load(TEST_CONFIG.read_text())["name"]
    assert "--policy ideal-observer" not in small.stdout + small.stderr
    assert f"--optimal search-oracle=results/{name}/optimal_agents/search-oracle/summary.json " in small.stdout + small.stderr


def _bad_config(tmp_path: Path, edit) -> Path:
    cfg = yaml.safe_load(QUICK_CONFIG.read_text())
    edit(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda c: c["evaluate"].update(budgetz=[1]), "budgetz"),            # typo: unknown key
        (lambda c: c["hpo"].pop("rounds"), "rounds"),                         # missing key
        (lambda c: c["data"].update(shards="four"), "shards"),                # wrong type
        (lambda c: c["train"].update(architectures=["transformer"]), "architectures"),  # bad value
        (lambda c: c.update(sed=1), "sed"),                                   # top-level typo
        # issue 12: checked by alchemy_mbrl.workflow_config when the Snakefile loads
        (lambda c: c["hpo"].update(budget=2.0), "hpo.budget"),                # 2.0 is not an integer
        (lambda c: c["train"]["options"].update(d_model=15, n_heads=4), "n_heads"),  # train.options via ModelConfig
        (lambda c: c["train"].update(eval_max_episodes=1), "eval_max_episodes"),     # cross-field: model-eval needs 2
        # issue 15: the optimal agents' section
        (lambda c: c.pop("optimal_agents"), "optimal_agents"),                          # missing section
        (lambda c: c["optimal_agents"]["search_oracle"].update(episodez=5), "episodez"),  # typo
        (lambda c: c["optimal_agents"]["ideal_observer"].update(chunks=0), "chunks"),   # below the minimum
        (lambda c: c["optimal_agents"]["ideal_observer"].update(episodes=16.0), "optimal_agents.ideal_observer.episodes"),
        (lambda c: c["optimal_agents"]["ideal_observer"].update(episodes=16, chunks=17), "optimal_agents.ideal_observer.chunks"),
        # issue 16: the learned rows' planner parameters
        (lambda c: c["evaluate"].update(params="best"), "params"),
        # the planner's readings (docs/planner.md): only the keys no HPO tunes, values of READINGS
        (lambda c: c.update(planner={"tie_break": "sideways"}), "tie_break"),
        (lambda c: c.update(planner={"temperature": 1.0}), "temperature"),
        (lambda c: c.update(planner={"reward_scale": 0}), "reward_scale"),
        # issue 26: threads and memory left the science config (the rules and the profiles set them)
        (lambda c: c["train"].update(threads=8), "train.threads: no longer a config key"),
        (lambda c: c["evaluate"].update(mem_mb=16000), "evaluate.mem_mb: no longer a config key"),
        # issue 27: training seeds, controls, long budgets
        (lambda c: c["train"].update(seeds={"transformer": [2022]}), "train.seeds.transformer: not a trained"),
        (lambda c: c["train"].update(seeds={"original": [2022, 5, 5]}), "train.seeds.original: seed 5 given twice"),
        (lambda c: c["train"].update(seeds={"original": [1, 2]}), "must include the top-level seed (2022)"),
        (lambda c: c["train"].update(seeds={"original": [2022, 5.0]}), "train.seeds.original[1]"),
        (lambda c: c["train"].update(seeds={"original": []}), "seeds"),
        (lambda c: c["train"].update(controls={"Big-LR": {"architecture": "original", "options": {}}}), "Big-LR"),
        (lambda c: c["train"].update(controls={"no_gru_head": {"architecture": "original", "options": {}}}),
         "train.controls.no_gru_head: the name of an architecture"),
        (lambda c: c["train"].update(controls={"x": {"architecture": "transformer", "options": {}}}), "architecture"),
        (lambda c: c["train"].update(controls={"x": {"architecture": "original", "options": {"lr": -1}}}),
         "train.controls.x.options (architecture original)"),
        (lambda c: c["train"].update(controls={"x": {"architecture": "original"}}), "options"),
        (lambda c: c["evaluate"].update(long_budgets=[10]), "evaluate.long_budgets: [10] already in evaluate.budgets"),
    ],
)
def test_schema_rejects_bad_config_naming_the_key(tmp_path: Path, edit, key: str) -> None:
    """Each bad config through the Snakefile's own check (alchemy_mbrl.workflow_config.check_config): an error
    naming the file and the key (test_snakemake_rejects_bad_config_before_any_job: the same through Snakemake)."""
    from alchemy_mbrl.workflow_config import check_config

    bad = _bad_config(tmp_path, edit)
    with pytest.raises(ValueError) as info:
        check_config(yaml.safe_load(bad.read_text()), REPO / "workflow" / "schemas" / "config.schema.yaml", [bad])
    out = str(info.value)
    assert out.startswith(str(bad)) and "validat" in out.lower(), out
    assert key in out, out


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda c: c["evaluate"].update(budgetz=[1]), "budgetz"),  # the schema
        (lambda c: c["hpo"].update(budget=2.0), "hpo.budget"),  # the package's strict integers
        (lambda c: c["train"].update(seeds={"original": [5]}), "must include the top-level seed"),  # cross-field
    ],
)
def test_snakemake_rejects_bad_config_before_any_job(tmp_path: Path, edit, key: str) -> None:
    bad = _bad_config(tmp_path, edit)
    r = snakemake(["-n"], tmp_path, config=bad)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "validat" in out.lower() and str(bad) in out, out
    assert key in out, out
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("skip", [False, True])
def test_workflow_as_a_snakemake_module_checks_its_config_unless_skipped(tmp_path: Path, skip: bool) -> None:
    """Our workflow imported as a Snakemake module by another workflow (in another folder): the package's config
    checks run from the module's own checkout (its schema, its src/), and `skip_validation: True` skips them as
    it skips Snakemake's `validate`, so a config they reject (a float hpo.budget) plans its jobs."""
    cfg = yaml.safe_load(QUICK_CONFIG.read_text())
    cfg["hpo"]["budget"] = 2.0
    (tmp_path / "theirs.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "Snakefile").write_text(
        'configfile: "theirs.yaml"\n\n\n'
        f'module alchemy:\n    snakefile: "{REPO / "Snakefile"}"\n    config: config\n'
        f"    skip_validation: {skip}\n\n\nuse rule * from alchemy\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the module finds its own src/
    r = subprocess.run([snakemake_exe(), "-n", "--cores", "1"], cwd=tmp_path, capture_output=True, text=True,
                       env=env, timeout=600)
    out = r.stdout + r.stderr
    if skip:
        assert r.returncode == 0, out
        assert "evaluate_learned_chunk" in out, out
    else:
        assert r.returncode != 0 and "hpo.budget: must be an integer" in out, out
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("named", [PAPER_CONFIG, CPU_CONFIG])
def test_a_named_config_is_used_alone_not_merged_into_the_quick_one(tmp_path: Path, named: Path) -> None:
    """`--configfile X` run where config/config.yaml exists (the repo root): the training configs are X's alone. Before
    the fix Snakemake deep-merged X into the quick config, so the paper config trained d_model-32 toy models at lr 1e-3
    (and a second seed of the original) for 750k steps."""
    (tmp_path / "config").mkdir()
    shutil.copy(QUICK_CONFIG, tmp_path / "config" / "config.yaml")
    cfg = yaml.safe_load(named.read_text())
    name = cfg["name"]
    targets = [f"results/{name}/train_configs/{a}.yaml" for a in ("original", "no_final_linear")]
    r = snakemake(["--cores", "1", *targets], tmp_path, config=named, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    options = cfg["train"].get("options") or {}
    for arch, target in zip(("original", "no_final_linear"), targets):
        written = yaml.safe_load((tmp_path / target).read_text())
        own = {**options, **((cfg["train"].get("architecture_options") or {}).get(arch) or {})}
        assert {k: v for k, v in written.items() if k in own} == own, (arch, written)
        extra = set(written) - set(own) - {"batch_size", "max_seconds", "seed", "steps"}
        assert not extra, (arch, extra)  # nothing from config/config.yaml
    dry = snakemake(["-n"], tmp_path, config=named, timeout=600)
    seeds = (cfg["train"].get("seeds") or {}).get("original") or []
    assert ("original-seed-2023" in dry.stdout) == (2023 in seeds), dry.stdout[-2000:]


def test_planner_readings_reach_every_planner_evaluation(tmp_path: Path) -> None:
    """The config's `planner` mapping becomes `--param KEY=VALUE` of every planner evaluation (learned and
    reference rows, HPO points) and `--planner` of run_info; without it, no command carries a --param."""
    cfg = yaml.safe_load(QUICK_CONFIG.read_text())
    cfg["planner"] = {"expansion_unit": "sample", "reward_scale": 0.1}
    path = tmp_path / "planner.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = snakemake(["-n", "-p"], tmp_path, config=path)
    assert r.returncode == 0, r.stdout + r.stderr
    cmds = re.findall(r"evaluate --policy planner .*? > ", r.stdout)
    counts = expected_job_counts(cfg)
    assert len(cmds) == counts["evaluate_learned_chunk"] + counts["evaluate_reference_chunk"] + counts["hpo_evaluate"]
    assert any("--simulator learned" in c for c in cmds) and any("--simulator bayes" in c for c in cmds)
    assert any("hpo/round-" in c for c in cmds)
    for c in cmds:
        assert " --param expansion_unit=sample --param reward_scale=0.1 " in c, c
    assert "--planner expansion_unit=sample reward_scale=0.1 --out" in r.stdout
    default = snakemake(["-n", "-p"], tmp_path, config=QUICK_CONFIG)
    assert default.returncode == 0 and "--param " not in default.stdout
    assert "--planner" not in re.search(r"report run-info .*", default.stdout).group(0)


def test_bad_planner_reading_is_refused_naming_key_and_file(tmp_path: Path) -> None:
    cfg = yaml.safe_load(QUICK_CONFIG.read_text())
    cfg["planner"] = {"tie_break": "sideways"}
    path = tmp_path / "sideways.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = snakemake(["-n"], tmp_path, config=path)
    assert r.returncode != 0 and "tie_break" in r.stderr + r.stdout and str(path) in r.stderr + r.stdout
    assert not (tmp_path / "results").exists()
    # the package's own check (PlannerParams, the one home of the ranges), behind the schema
    from alchemy_mbrl.workflow_config import validate_workflow_config

    for planner, key in (({"tie_break": "sideways"}, "planner.tie_break"), ({"c1": 1.0}, "planner.c1"),
                         ({"reward_scale": -1.0}, "planner.reward_scale"), ("sample", "planner")):
        with pytest.raises(ValueError, match=re.escape(key)):
            validate_workflow_config({**cfg, "planner": planner})
    validate_workflow_config({**cfg, "planner": {"expansion_unit": "sample", "q_normalisation": "minmax"}})


def test_schema_planner_enums_are_the_packages_readings() -> None:
    """The schema's enums of `planner` are READINGS (and Q_NORMALISATIONS) of alchemy_mbrl.planner.params."""
    from alchemy_mbrl.planner.params import Q_NORMALISATIONS, READINGS
    from alchemy_mbrl.workflow_config import PLANNER_KEYS

    props = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())["properties"]
    planner = props["planner"]["properties"]
    assert set(planner) == set(PLANNER_KEYS) == {"reward_scale", "q_normalisation", *READINGS}
    assert planner["q_normalisation"]["enum"] == list(Q_NORMALISATIONS)
    for name, allowed in READINGS.items():
        assert planner[name]["enum"] == list(allowed), name


def _rule_blocks() -> dict[str, str]:
    """``name -> text`` of every ``rule`` and ``use rule ... as name`` block of the workflow."""
    blocks = {}
    for m in re.finditer(r"(?ms)^(?:rule (\w+)|use rule \w+ as (\w+) with):\n.*?(?=^\S|\Z)", workflow_rules_text()):
        blocks[m.group(1) or m.group(2)] = m.group(0).rstrip()
    return blocks


def test_every_rule_is_thin_and_complete() -> None:
    """Each rule has log, benchmark and conda and calls the CLI once; no rule sets threads (the profiles do);
    the rules average at most 15 lines (issue 26), the repeated parts in `use rule` and common.smk."""
    text = workflow_rules_text()
    blocks = _rule_blocks()
    assert len(blocks) >= 20
    for name, block in blocks.items():
        if name in ("all", "all_long"):  # the targets
            continue
        for directive in ("log:", "benchmark:"):
            assert f"    {directive}" in block, f"rule {name} lacks {directive}"
        assert "    threads:" not in block, f"rule {name} sets threads: the profiles' set-threads do"
        if block.startswith("rule "):
            assert "    conda:" in block and "    shell:" in block, name
            if name != "train_config":
                assert block.count("alchemy-mbrl ") == 1, f"rule {name} must call the CLI exactly once"
    lengths = {name: len(block.splitlines()) for name, block in blocks.items()}
    assert sum(lengths.values()) / len(lengths) <= 15, lengths
    assert "alchemy-mbrl() {{ python -m alchemy_mbrl.cli" in text  # the shell prefix's function: this checkout


# --- environments ----------------------------------------------------------------------------

def _pyproject_pins(group: str | None = None) -> dict[str, str]:
    """``name -> specifier`` of pyproject's dependencies (``group``: an optional-dependencies group)."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] if group is None else project["optional-dependencies"][group]
    pins = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", dep)
        assert m, dep
        pins[m.group(1).lower()] = m.group(2).replace(" ", "")
    return pins


def _conda_specs(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(conda deps, pip deps) of an environment file as name -> version spec (normalised to pip syntax)."""
    env = yaml.safe_load(path.read_text())
    conda, pip = {}, {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for p in dep.get("pip", []):
                if p.startswith("-"):
                    continue
                m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", p)
                pip[m.group(1).lower()] = m.group(2).replace(" ", "")
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", dep)
        spec = m.group(2).replace(" ", "")
        if re.fullmatch(r"=[^=].*", spec):  # conda's single '=' is an exact pin
            spec = "=" + spec
        conda[m.group(1).lower()] = spec
    return conda, pip


ENV_FILES = [REPO / "environment.yml", *sorted((REPO / "workflow" / "envs").glob("*.yaml"))]


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_conda_envs_pin_exactly_and_agree_with_pyproject(env_file: Path) -> None:
    """Every package of the environment files is pinned to one version (as the Snakemake workflow
    catalog's workflows are), that version satisfies pyproject.toml's requirement, and the only
    channels are conda-forge and nodefaults."""
    from packaging.specifiers import SpecifierSet

    env = yaml.safe_load(env_file.read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"], env_file.name
    conda, pip = _conda_specs(env_file)
    assert conda.get("python") == "==3.11"
    requires = __import__("tomllib").loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"
    for name, spec in {**conda, **pip}.items():
        if name == "pip":
            continue
        assert re.fullmatch(r"==\d+(\.\d+)*", spec), f"{env_file.name}: {name}{spec} is not an exact pin"
    wanted = dict(_pyproject_pins())
    if env_file.name == "environment.yml":  # the user environment also has the workflow engine and test tools
        wanted.update(_pyproject_pins("dev"))
    for name, spec in wanted.items():
        got = pip.get(name, conda.get(name))
        assert got is not None, f"{env_file.name} lacks {name} (pyproject: {name}{spec})"
        version = got[2:]
        assert version in SpecifierSet(spec), f"{env_file.name}: {name}{got} but pyproject.toml says {name}{spec}"
    assert pip.get("torch") == "==2.13.0", "torch comes from PyPI, pinned as in pyproject.toml"


def test_dev_tools_pinned_exactly() -> None:
    """The formatter is pinned exactly: another snakefmt version formats differently."""
    assert _pyproject_pins("dev")["snakefmt"].startswith("==")


def snakefmt_exe() -> str | None:
    import sys

    here = Path(sys.executable).with_name("snakefmt")
    return str(here) if here.exists() else shutil.which("snakefmt")


def test_snakefmt_clean() -> None:
    """`snakefmt --check .` passes (the Snakemake workflow catalog's standard), at pyproject's pin."""
    exe = snakefmt_exe()
    if exe is None:
        pytest.skip("snakefmt is not installed (pip install -e '.[dev]')")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    pin = _pyproject_pins("dev")["snakefmt"][2:]
    if pin not in version:
        pytest.skip(f"snakefmt {version.strip()} is not the pinned {pin}: formatting may differ")
    r = subprocess.run([exe, "--check", "."], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_catalog_files() -> None:
    """What the Snakemake workflow catalog looks for: LICENSE, the catalog file, config/README.md."""
    assert "Apache License" in (REPO / "LICENSE").read_text() and "Version 2.0" in (REPO / "LICENSE").read_text()
    cat = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    assert cat["usage"]["software-stack-deployment"]["conda"] is True
    readme = (REPO / "config" / "README.md").read_text()
    for key in ("name", "description", "evaluate.reference_budgets", "evaluate.reference_episodes", "train.steps",
                "optimal_agents.ideal_observer.episodes", "optimal_agents.ideal_observer.chunks",
                "optimal_agents.search_oracle.episodes", "optimal_agents.search_oracle.chunks",
                "train.seeds.{row}", "train.controls.{name}", "evaluate.long_budgets"):
        assert f"`{key}`" in readme, key


def test_each_config_has_its_own_output_folder() -> None:
    """Outputs go to results/<name>/: the three configs have different names (a paper run never
    overwrites a quick one) and every output, log and benchmark path of the rules is under them."""
    names = [yaml.safe_load(c.read_text())["name"] for c in (QUICK_CONFIG, PAPER_CONFIG, TEST_CONFIG)]
    assert names == ["quick", "paper", "test"]
    for c in (QUICK_CONFIG, PAPER_CONFIG, TEST_CONFIG):
        assert yaml.safe_load(c.read_text())["description"].strip()
    text = re.sub(r'(?m)^(OUT|LOGS|BENCH) = f"\w+/\{NAME\}"$', "", workflow_rules_text())
    assert not re.search(r'"(results|logs|benchmarks)/', text), "a path not under results/<name>/ (use OUT, LOGS, BENCH)"


def test_paper_dry_run_plans_only_paper_outputs(tmp_path: Path) -> None:
    """A dry run of config/paper.yaml in a directory holding quick results plans nothing there."""
    quick = tmp_path / "results" / "quick" / "tables" / "table1.md"
    quick.parent.mkdir(parents=True)
    quick.write_text("quick")
    r = snakemake(["-n"], tmp_path, config=PAPER_CONFIG)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "results/paper/tables/table1.md" in out
    assert "results/quick" not in out and "logs/quick" not in out
    assert quick.read_text() == "quick"


def test_onsuccess_names_outputs_and_report() -> None:
    text = (REPO / "Snakefile").read_text()
    block = text[text.index("onsuccess:"):]
    for what in ("table1.md", "table2.md", "score_vs_expansions.png", "training_curves.png", "hpo_convergence.png",
                 "snakemake --report"):
        assert what in block, what


def test_rules_use_the_conda_env() -> None:
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        if re.search(r"(?m)^rule ", smk.read_text()):  # a file that defines rules (`use rule` inherits conda)
            assert "conda:\n        ENV" in smk.read_text(), smk
    assert 'ENV = "../envs/alchemy.yaml"' in (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert (REPO / "workflow" / "envs" / "alchemy.yaml").exists()


# --- profiles -------------------------------------------------------------------------------

def _gpu_rules() -> set[str]:
    """The rules that request ``gpu=GPU``: their own ``resources`` say so, or a ``use rule`` inherits them
    (a ``use rule ... with: resources:`` replaces the parent's resources whole)."""
    blocks = _rule_blocks()
    parents = {m.group(2): m.group(1) for m in re.finditer(r"^use rule (\w+) as (\w+)", workflow_rules_text(), re.M)}

    def asks(name: str) -> bool:
        block = blocks[name]
        if "    resources:" in block:
            return re.search(r"^\s+gpu=GPU", block, re.M) is not None
        return name in parents and asks(parents[name])

    return {name for name in blocks if asks(name)}


def test_slurm_profile() -> None:
    prof = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    assert prof["executor"] == "slurm"
    assert {"slurm_partition", "runtime"} <= set(prof["default-resources"])
    assert prof["retries"] >= 1 and prof["latency-wait"] >= 1 and prof["jobs"] >= 1
    gpu_rules = _gpu_rules()
    assert {"train", "train_variant", "model_eval", "model_eval_variant", "hpo_evaluate", "evaluate_learned_chunk"} <= gpu_rules
    for rule in gpu_rules:  # every rule that asks for a GPU, inherited ones too (a missing one is sent at 32 GB to CPUs)
        assert rule in prof["set-resources"], f"{rule} asks for a GPU but the SLURM profile does not send it to one"
        assert prof["set-resources"][rule]["gpu"] == 1, rule
        assert prof["set-resources"][rule]["slurm_partition"] == "$SLURM_GPU_PARTITION", rule
    for rule in set(prof["set-resources"]) - gpu_rules:
        assert "gpu" not in prof["set-resources"][rule], f"{rule} runs on a CPU but the profile gives it a GPU"
    for rule in ("train", "model_eval"):
        assert prof["set-threads"][f"{rule}_variant"] == prof["set-threads"][rule]
    # memory has one home, the rules (common.smk's mem_mb, doubling per attempt); threads the profiles'
    # set-threads (the same in both), the rules none
    for res in [prof["default-resources"], *prof["set-resources"].values()]:
        assert not {"mem_mb", "cpus_per_task", "threads"} & set(res), res
    local = yaml.safe_load((REPO / "workflow" / "profiles" / "local" / "config.yaml").read_text())
    assert prof["set-threads"] == local["set-threads"] and prof["set-threads"]["train"] > 1
    text = workflow_rules_text()
    assert text.count("2 ** (attempt - 1)") == 1, "one growth law on retry, in common.smk's mem_mb"
    assert all("attempt" not in p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk") if p.name != "common.smk")
    assert len(re.findall(r"^\s+mem_mb=mem_mb\(", text, re.M)) == len(re.findall(r"^\s+mem_mb=", text, re.M))
    # only the learned model needs a GPU: the perfect-model rows stay on the CPU partition
    assert "gpu" not in prof["set-resources"]["evaluate_reference_chunk"]
    assert "slurm_partition" not in prof["set-resources"]["evaluate_reference_chunk"]
    assert set(prof["set-resources"]) <= workflow_rules(), "set-resources names a rule that does not exist"


def test_local_profile_limits_gpu_jobs(tmp_path: Path) -> None:
    prof = yaml.safe_load((REPO / "workflow" / "profiles" / "local" / "config.yaml").read_text())
    assert any(str(r).startswith("gpu=") for r in prof["resources"])
    r = snakemake(["-n", "--profile", str(REPO / "workflow" / "profiles" / "local")], tmp_path, config=PAPER_CONFIG)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("path", [REPO / "config" / "config.yaml", REPO / ".test" / "config.yaml"])
def test_small_configs_train_to_a_step_budget_only(path: Path) -> None:
    """Reruns must reproduce Tables 1-2 exactly on CPU: a wall-clock cap would make the number of
    training steps (and so every downstream number) depend on how loaded the machine is."""
    train = yaml.safe_load(path.read_text())["train"]
    assert train["max_seconds"] is None
    assert train.get("options", {}).get("max_seconds") is None


def test_extra_models_keep_the_default_models_paths_and_configs(tmp_path: Path) -> None:
    """Issue 27: with train.seeds and train.controls, each architecture's own model (the top-level seed) keeps its
    path, its train --config overrides and its command (so an existing run is not redone); the extra models train
    into models/<arch>-seed-<s>/ and models/<arch>-<control>/ with their own seed and options, and Table 2 gets
    every model's record and per-episode entropies, the top-level seed's first."""
    from alchemy_mbrl.workflow_config import model_overrides, train_overrides, trained_models

    cfg = yaml.safe_load(CPU_CONFIG.read_text())
    models = trained_models(cfg)
    default = cfg["seed"]
    for m in models:
        if m.control is None and m.seed == default:
            assert (m.name, m.variant) == (m.arch, "") and model_overrides(cfg, m) == train_overrides(cfg, m.arch)
        elif m.control is None:
            assert m.name == f"{m.arch}-seed-{m.seed}"
            assert model_overrides(cfg, m) == {**train_overrides(cfg, m.arch), "seed": m.seed}
    control = next(m for m in models if m.control)
    assert control.name == "no_final_linear-original_lr" and model_overrides(cfg, control)["lr"] == 1.0e-3
    assert train_overrides(cfg, "no_final_linear")["lr"] == 2.0e-4
    r = snakemake(["-n", "-p"], tmp_path, config=CPU_CONFIG)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    for arch in cfg["train"]["architectures"]:  # the command of a run without seeds, unchanged
        assert (f"alchemy-mbrl train --config results/cpu/train_configs/{arch}.yaml --data results/cpu/data/manifest.json"
                f" --arch {arch} --out results/cpu/models/{arch} --no-progress > logs/cpu/train/{arch}.log") in out
    assert ("--arch original --out results/cpu/models/original-seed-2023 " in out
            and "--arch no_final_linear --out results/cpu/models/no_final_linear-original_lr " in out)
    table2 = re.search(r"report table2 (.*?) --run-info", out).group(1)
    assert table2.startswith("--model-eval original@2022=results/cpu/model_eval/original.json "
                             "original@2023=results/cpu/model_eval/original-seed-2023.json")
    assert "--control original_lr:no_final_linear@2022=results/cpu/model_eval/no_final_linear-original_lr.json" in table2
    assert "--per-episode original@2022=results/cpu/model_eval/original.csv" in table2
    assert "no_gru_head@2024=results/cpu/model_eval/no_gru_head-seed-2024.csv" in table2
    assert "--train-seeds original=2022,2023,2024" in out and '"original_lr"' in out  # run_info records them
    # Table 1 pairs every planner row with the random heuristic and the ideal observer on their returns
    table1 = re.search(r"report table1 (.*?) --run-info", out).group(1)
    assert ("--returns learned:60=results/cpu/eval/learned/budget-60/returns.csv" in table1
            and "random-heuristic=results/cpu/baselines/random-heuristic/merged.csv" in table1
            and "ideal-observer=results/cpu/optimal_agents/ideal-observer/returns.csv" in table1)
    assert "learned:1250" not in table1  # the long row is all_long's


def test_trained_models_names_and_validation_without_snakemake() -> None:
    """Issue 27's model list and its checks, in the package (fast): a control with seeds of its own, the order
    (each row's top-level seed first), and the refusals naming the key."""
    from alchemy_mbrl.workflow_config import VARIANT_PATTERN as VARIANT
    from alchemy_mbrl.workflow_config import trained_models, validate_workflow_config

    cfg = yaml.safe_load(QUICK_CONFIG.read_text())
    cfg["train"]["seeds"] = {"original": [5, 2022], "lr_hi": [2022, 7]}
    cfg["train"]["controls"] = {"lr_hi": {"architecture": "no_gru_head", "options": {"lr": 3.0e-3}}}
    validate_workflow_config(cfg, REPO / "workflow" / "schemas" / "config.schema.yaml")
    names = [m.name for m in trained_models(cfg)]
    assert names == ["original", "original-seed-5", "gru_backbone", "no_gru_head", "no_final_linear",
                     "no_gru_head-lr_hi", "no_gru_head-lr_hi-seed-7"]
    assert all(re.fullmatch(rf"[a-z_]+-(?:{VARIANT})", n) for n in names if "-" in n)
    for edit, message in (
        (lambda c: c["train"]["seeds"].update(gru_backbone=[2022, 3, 3]), "train.seeds.gru_backbone: seed 3 given twice"),
        (lambda c: c["train"]["seeds"].update(nope=[2022]), "train.seeds.nope: not a trained architecture or a control"),
        (lambda c: c["train"]["seeds"].update(original=[5]), "must include the top-level seed (2022)"),
        (lambda c: c["train"]["controls"].update(original={"architecture": "original", "options": {}}),
         "train.controls.original: the name of an architecture"),
        (lambda c: c["train"]["controls"].update(Bad={"architecture": "original", "options": {}}),
         "train.controls.Bad: a control's name"),
        (lambda c: c["evaluate"].update(long_budgets=[5, 40]), "evaluate.long_budgets: [5] already in evaluate.budgets"),
    ):
        bad = yaml.safe_load(yaml.safe_dump(cfg))
        edit(bad)
        with pytest.raises(ValueError, match=re.escape(message)):
            validate_workflow_config(bad)


def test_tune_bayes_is_the_papers_hpo_with_the_exact_model(tmp_path: Path) -> None:
    """config/tune-bayes.yaml differs from config/paper.yaml only where its header says (the HPO's
    simulator and episodes, no GPU, its name), and its target plans the HPO alone: no data, no training."""
    paper = yaml.safe_load(PAPER_CONFIG.read_text())
    tune_file = REPO / "config" / "tune-bayes.yaml"
    tune = yaml.safe_load(tune_file.read_text())
    assert tune["hpo"].pop("simulator") == "bayes" and paper["hpo"].pop("simulator") == "learned"
    assert tune["hpo"].pop("episodes") == 32
    paper["hpo"].pop("episodes")
    for key in ("name", "description", "use_gpu"):
        tune.pop(key), paper.pop(key)
    assert tune == paper
    r = snakemake(["-n", "results/tune-bayes/hpo/best.json", "--quiet", "rules"], tmp_path, config=tune_file)
    assert r.returncode == 0, r.stdout + r.stderr
    counts = job_counts(r.stdout)
    assert counts == {"hpo_ask": 8, "hpo_evaluate": 64, "hpo_summary": 64, "hpo_tell": 8, "hpo_best": 1, "total": 145}
