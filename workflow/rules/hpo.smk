# Hyperparameter optimisation of the tree search (T, C1, C2, K) at hpo.budget expansions:
# hpo.rounds rounds; round r asks hpo.points_per_round points from round r-1's state
# (constant liar), evaluates each point as its own job on its own episodes, and tells the
# scores back. Each round leaves results/hpo/round-<r>/state.pkl, so an interrupted
# optimisation resumes at the last finished round.


rule hpo_ask:
    input:
        state=hpo_state_in,
    output:
        asked=f"{OUT}/hpo/round-{{round}}/asked.pkl",
        points=f"{OUT}/hpo/round-{{round}}/points.json",
        point_files=expand(f"{OUT}/hpo/round-{{{{round}}}}/point-{{point}}.json", point=range(HPO_POINTS)),
    log:
        f"{LOGS}/hpo_ask/round-{{round}}.log",
    benchmark:
        f"{BENCH}/hpo_ask/round-{{round}}.tsv"
    priority: 2
    conda:
        ENV
    resources:
        mem_mb=mem_mb(4000),
    params:
        args=lambda wc, input, output: hpo_ask_args(input.state, output.asked),
    shell:
        "alchemy-mbrl hpo ask --round {wildcards.round} {params.args} > {log} 2>&1"


use rule evaluate_learned_chunk as hpo_evaluate with:
    input:
        params=f"{OUT}/hpo/round-{{round}}/point-{{point}}.json",
        model=planner_model_inputs(HPO_SIM, HPO_ARCH),
    output:
        f"{OUT}/hpo/round-{{round}}/eval/point-{{point}}/returns.csv",
    log:
        f"{LOGS}/hpo_evaluate/round-{{round}}/point-{{point}}.log",
    benchmark:
        f"{BENCH}/hpo_evaluate/round-{{round}}/point-{{point}}.tsv"
    priority: 2
    resources:
        mem_mb=mem_mb(16000),
        gpu=GPU if HPO_SIM == "learned" else 0,
    params:
        args=lambda wc, input: hpo_point_args(wc.round, wc.point, input.params),


use rule merge_evaluation as hpo_summary with:
    input:
        f"{OUT}/hpo/round-{{round}}/eval/point-{{point}}/returns.csv",
    output:
        returns=f"{OUT}/hpo/round-{{round}}/eval/point-{{point}}/merged.csv",
        summary=f"{OUT}/hpo/round-{{round}}/eval/point-{{point}}/summary.json",
    log:
        f"{LOGS}/hpo_summary/round-{{round}}/point-{{point}}.log",
    benchmark:
        f"{BENCH}/hpo_summary/round-{{round}}/point-{{point}}.tsv"
    priority: 2


rule hpo_tell:
    input:
        asked=f"{OUT}/hpo/round-{{round}}/asked.pkl",
        results=expand(f"{OUT}/hpo/round-{{{{round}}}}/eval/point-{{point}}/summary.json", point=range(HPO_POINTS)),
    output:
        f"{OUT}/hpo/round-{{round}}/state.pkl",
    log:
        f"{LOGS}/hpo_tell/round-{{round}}.log",
    benchmark:
        f"{BENCH}/hpo_tell/round-{{round}}.tsv"
    priority: 2
    conda:
        ENV
    resources:
        mem_mb=mem_mb(2000),
    shell:
        "alchemy-mbrl hpo tell --state-in {input.asked} --results {input.results} --state-out {output} > {log} 2>&1"


rule hpo_best:
    input:
        f"{OUT}/hpo/round-{HPO_ROUNDS - 1}/state.pkl",
    output:
        best=f"{OUT}/hpo/best.json",
        summary=f"{OUT}/hpo/best_summary.json",
        history=f"{OUT}/hpo/history.csv",
    log:
        f"{LOGS}/hpo_best.log",
    benchmark:
        f"{BENCH}/hpo_best.tsv"
    priority: 2
    conda:
        ENV
    shell:
        "alchemy-mbrl hpo best --state {input} --out {output.best} --summary {output.summary}"
        " --history {output.history} > {log} 2>&1"
