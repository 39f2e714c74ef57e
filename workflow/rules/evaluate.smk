# Evaluation of the tree search with the tuned hyperparameters (results/<name>/hpo/best.json):
# the learned model at every budget of evaluate.budgets, and the reference simulators
# (exact Bayesian model, true chemistry) at evaluate.reference_budgets on
# evaluate.reference_episodes episodes, with the tuned or Table 4's parameters
# (evaluate.reference_params). Each (simulator,
# budget) is split into evaluate.chunks parallel jobs over disjoint episode ranges, merged.
# Baselines (random heuristic, uniform random) are played by the same `evaluate` command (one
# job each, all episodes) and summarised by the same `merge-returns`; so are Table 1's measured
# reference agents (ideal observer, search oracle: optimal_agents.*), in optimal_agents.<agent>.chunks
# jobs each, on the baselines' episodes (seed baselines.seed, so their scores are paired).


# The learned-model rows and the perfect-model rows are separate rules, so that a cluster profile
# sends only the learned ones to a GPU partition. Every rule that plays episodes (these, the HPO's
# points, the baselines, the optimal agents) is this one with its own paths and `evaluate` arguments.
rule evaluate_learned_chunk:
    input:
        params=planner_params_inputs("learned"),
        model=planner_model_inputs("learned", EVAL_ARCH),
    output:
        f"{OUT}/eval/learned/budget-{{budget}}/chunk-{{chunk}}.csv",
    log:
        f"{LOGS}/evaluate_chunk/learned/budget-{{budget}}/chunk-{{chunk}}.log",
    benchmark:
        f"{BENCH}/evaluate_chunk/learned/budget-{{budget}}/chunk-{{chunk}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=mem_mb(16000),
        gpu=GPU,
    params:
        args=lambda wc: planner_chunk_args(wc.get("simulator", "learned"), wc.budget, wc.chunk),
    shell:
        "alchemy-mbrl evaluate {params.args} --out {output} --no-progress > {log} 2>&1"


use rule evaluate_learned_chunk as evaluate_reference_chunk with:
    input:
        params=lambda wc: planner_params_inputs(wc.simulator),
    output:
        f"{OUT}/eval/{{simulator,bayes|oracle}}/budget-{{budget}}/chunk-{{chunk}}.csv",
    log:
        f"{LOGS}/evaluate_chunk/{{simulator}}/budget-{{budget}}/chunk-{{chunk}}.log",
    benchmark:
        f"{BENCH}/evaluate_chunk/{{simulator}}/budget-{{budget}}/chunk-{{chunk}}.tsv"
    resources:
        mem_mb=mem_mb(16000),


# Every merge of returns CSVs into returns.csv and summary.json is this rule, with its own paths.
rule merge_evaluation:
    input:
        expand(f"{OUT}/eval/{{{{simulator}}}}/budget-{{{{budget}}}}/chunk-{{chunk}}.csv", chunk=range(CHUNKS)),
    output:
        returns=f"{OUT}/eval/{{simulator}}/budget-{{budget}}/returns.csv",
        summary=f"{OUT}/eval/{{simulator}}/budget-{{budget}}/summary.json",
    log:
        f"{LOGS}/merge_evaluation/{{simulator}}/budget-{{budget}}.log",
    benchmark:
        f"{BENCH}/merge_evaluation/{{simulator}}/budget-{{budget}}.tsv"
    conda:
        ENV
    shell:
        "alchemy-mbrl merge-returns {input} --out {output.returns} --summary {output.summary} > {log} 2>&1"


use rule evaluate_learned_chunk as baseline with:
    input:
        [],
    output:
        f"{OUT}/baselines/{{policy}}/returns.csv",
    log:
        f"{LOGS}/baseline/{{policy}}.log",
    benchmark:
        f"{BENCH}/baseline/{{policy}}.tsv"
    resources:
        mem_mb=mem_mb(4000),
    params:
        args=lambda wc: baseline_args(wc.policy),


use rule merge_evaluation as baseline_summary with:
    input:
        f"{OUT}/baselines/{{policy}}/returns.csv",
    output:
        returns=f"{OUT}/baselines/{{policy}}/merged.csv",
        summary=f"{OUT}/baselines/{{policy}}/summary.json",
    log:
        f"{LOGS}/baseline_summary/{{policy}}.log",
    benchmark:
        f"{BENCH}/baseline_summary/{{policy}}.tsv"


use rule evaluate_learned_chunk as optimal_agent_chunk with:
    input:
        [],
    output:
        f"{OUT}/optimal_agents/{{agent}}/chunk-{{chunk}}.csv",
    log:
        f"{LOGS}/optimal_agent_chunk/{{agent}}/chunk-{{chunk}}.log",
    benchmark:
        f"{BENCH}/optimal_agent_chunk/{{agent}}/chunk-{{chunk}}.tsv"
    resources:
        mem_mb=mem_mb(8000),
    params:
        args=lambda wc: agent_chunk_args(wc.agent, wc.chunk),


use rule merge_evaluation as optimal_agent_summary with:
    input:
        lambda wc: optimal_chunks(wc.agent),
    output:
        returns=f"{OUT}/optimal_agents/{{agent}}/returns.csv",
        summary=f"{OUT}/optimal_agents/{{agent}}/summary.json",
    log:
        f"{LOGS}/optimal_agent_summary/{{agent}}.log",
    benchmark:
        f"{BENCH}/optimal_agent_summary/{{agent}}.tsv"
