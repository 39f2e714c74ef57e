# alchemy-mbrl: from data to the paper's Tables 1-2 and plots (Pinon et al., 2022).
#
#   snakemake --cores 2                                          # quick scale (config/config.yaml)
#   snakemake --profile workflow/profiles/local --cores 32 --configfile config/paper.yaml
#   snakemake --profile workflow/profiles/slurm --configfile config/paper.yaml
#   snakemake --report report.html                               # HTML report of the results
#
# Every rule calls one `alchemy-mbrl` sub-command. Outputs of a config go to results/<name>/
# (its `name` key). config/README.md describes the keys, docs/workflow.md the outputs and how
# to resume.

import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")


# The quick scale's config, unless the command names its own (--configfile): then that file alone, not merged
# into this one (Snakemake would deep-merge them, and every key the named file leaves out, e.g. the quick
# scale's d_model, would silently leak into a paper-scale run).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# What the schema cannot say (strict integers, cross-field rules, train.options through the
# package's own training config, hpo.space through the HPO's search space, planner through the
# planner's own PlannerParams) is checked by the package itself, so that a config every job would
# reject fails here, before any job runs; every error names the config file(s) it read.
# The checkout (this file's folder; workflow.basedir would be the importing workflow's when this one is used
# as a Snakemake module).
REPO = str(workflow.current_basedir)
SRC = os.path.join(REPO, "src")  # this checkout's package: imported here, and first on every job's PYTHONPATH
sys.path.insert(0, SRC)
from alchemy_mbrl.workflow_config import (
    VARIANT_PATTERN,
    check_config,
    model_overrides,
    planner_settings,
    train_overrides,
    trained_models,
)

try:
    check_config(
        config,
        os.path.join(REPO, "workflow/schemas/config.schema.yaml"),
        config_files=list(workflow.configfiles),
        names=", ".join(map(str, workflow.overwrite_configfiles)) or "config/config.yaml",
        skip=workflow.modifier.skip_validation,
    )
except ValueError as exc:
    raise WorkflowError(str(exc)) from None


report: "workflow/report/workflow.rst"


wildcard_constraints:
    shard=r"\d{4}",
    arch=r"[a-z_]+",
    variant=VARIANT_PATTERN,
    round=r"\d+",
    point=r"\d+",
    budget=r"\d+",
    chunk=r"\d+",
    simulator=r"learned|bayes|oracle",
    policy=r"random-heuristic|uniform",
    agent=r"ideal-observer|search-oracle",


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/hpo.smk"  # after evaluate.smk: its rules are evaluate's with other paths
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),


# The default target and the learned-model rows at evaluate.long_budgets (tables/table1_long.*,
# plots/score_vs_expansions_long.*): `snakemake --cores 2 --configfile config/cpu.yaml all_long`.
rule all_long:
    input:
        final_outputs(long=True),


onsuccess:
    print(
        f"\nalchemy-mbrl workflow finished ({NAME} scale: {config['description']}).\n"
        f"  Tables: {OUT}/tables/table1.md, {OUT}/tables/table2.md (also .csv, .tex, .html)\n"
        f"  Plots:  {OUT}/plots/score_vs_expansions.png, {OUT}/plots/training_curves.png,"
        f" {OUT}/plots/hpo_convergence.png (and .pdf)\n"
        f"  Report: snakemake --report {NAME}-report.html   (with this run's --configfile, if any)\n"
        f"  Logs:   {LOGS}/, per-job times: {BENCH}/\n"
    )
