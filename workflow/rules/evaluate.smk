# Evaluation of the tree search with the tuned hyperparameters (results/hpo/best.json):
# the learned model at every budget of evaluate.budgets, and the reference simulators
# (exact Bayesian model, true chemistry) at evaluate.reference_budgets. Each (simulator,
# budget) is split into evaluate.chunks parallel jobs over disjoint episode ranges, merged.
# Baselines (random heuristic, uniform random) are played by the same `evaluate` command (one
# job each, all episodes) and summarised by the same `merge-returns`.

EVAL_ARCH = config["evaluate"]["architecture"]


rule evaluate_chunk:
    input:
        params="results/hpo/best.json",
        model=lambda wc: planner_model_inputs(wc.simulator, EVAL_ARCH),
    output:
        "results/eval/{simulator}/budget-{budget}/chunk-{chunk}.csv",
    log:
        "logs/evaluate_chunk/{simulator}/budget-{budget}/chunk-{chunk}.log",
    benchmark:
        "benchmarks/evaluate_chunk/{simulator}/budget-{budget}/chunk-{chunk}.tsv"
    params:
        cli=CLI,
        model=lambda wc: planner_model_arg(wc.simulator, EVAL_ARCH),
        episodes=config["evaluate"]["episodes"],
        chunks=CHUNKS,
        seed=config["evaluate"]["seed"],
    threads: config["evaluate"]["threads"]
    resources:
        mem_mb=mem_mb(config["evaluate"]["mem_mb"]),
        gpu=lambda wc: GPU if wc.simulator == "learned" else 0,
    conda:
        ENV
    shell:
        "{params.cli} evaluate --policy planner --simulator {wildcards.simulator} {params.model}"
        " --budget {wildcards.budget} --episodes {params.episodes} --chunk {wildcards.chunk}/{params.chunks}"
        " --seed {params.seed} --params {input.params} --out {output} --no-progress > {log} 2>&1"


rule merge_evaluation:
    input:
        expand("results/eval/{{simulator}}/budget-{{budget}}/chunk-{chunk}.csv", chunk=range(CHUNKS)),
    output:
        returns="results/eval/{simulator}/budget-{budget}/returns.csv",
        summary="results/eval/{simulator}/budget-{budget}/summary.json",
    log:
        "logs/merge_evaluation/{simulator}/budget-{budget}.log",
    benchmark:
        "benchmarks/merge_evaluation/{simulator}/budget-{budget}.tsv"
    params:
        cli=CLI,
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
    conda:
        ENV
    shell:
        "{params.cli} merge-returns {input} --out {output.returns} --summary {output.summary} > {log} 2>&1"


rule baseline:
    output:
        "results/baselines/{policy}/returns.csv",
    log:
        "logs/baseline/{policy}.log",
    benchmark:
        "benchmarks/baseline/{policy}.tsv"
    params:
        cli=CLI,
        episodes=config["baselines"]["episodes"],
        seed=config["baselines"]["seed"],
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
    conda:
        ENV
    shell:
        "{params.cli} evaluate --policy {wildcards.policy} --episodes {params.episodes} --seed {params.seed}"
        " --out {output} --no-progress > {log} 2>&1"


rule baseline_summary:
    input:
        "results/baselines/{policy}/returns.csv",
    output:
        returns="results/baselines/{policy}/merged.csv",
        summary="results/baselines/{policy}/summary.json",
    log:
        "logs/baseline_summary/{policy}.log",
    benchmark:
        "benchmarks/baseline_summary/{policy}.tsv"
    params:
        cli=CLI,
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
    conda:
        ENV
    shell:
        "{params.cli} merge-returns {input} --out {output.returns} --summary {output.summary} > {log} 2>&1"
