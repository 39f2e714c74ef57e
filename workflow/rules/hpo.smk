# Hyperparameter optimisation of the tree search (T, C1, C2, K) at hpo.budget expansions:
# hpo.rounds rounds; round r asks hpo.points_per_round points from round r-1's state
# (constant liar), evaluates each point as its own job on its own episodes, and tells the
# scores back. Each round leaves results/hpo/round-<r>/state.pkl, so an interrupted
# optimisation resumes at the last finished round.

HPO_ARCH = config["hpo"]["architecture"]
HPO_SIM = config["hpo"]["simulator"]


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
    threads: 1
    resources:
        mem_mb=mem_mb(4000),
    params:
        cli=CLI,
        state_in=lambda wc, input: input.state[0] if input.state else "none",
        out_dir=lambda wc, output: os.path.dirname(output.asked),
        points=HPO_POINTS,
        seed=config["hpo"]["seed"],
        initial=config["hpo"]["initial_points"],
        acq=config["hpo"]["acq_func"],
        acq_optimizer=config["hpo"]["acq_optimizer"],
        space=hpo_space_args(),
        gamma=config["hpo"]["gamma"],
    shell:
        "{params.cli} hpo ask --round {wildcards.round} --state-in {params.state_in} --points {params.points}"
        " --seed {params.seed} --initial-points {params.initial} --acq-func {params.acq}"
        " --acq-optimizer {params.acq_optimizer}"
        " {params.space} --gamma {params.gamma} --out-dir {params.out_dir} > {log} 2>&1"


rule hpo_evaluate:
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
    conda:
        ENV
    threads: config["evaluate"]["threads"]
    resources:
        mem_mb=mem_mb(config["evaluate"]["mem_mb"]),
        gpu=GPU if HPO_SIM == "learned" else 0,
    params:
        cli=CLI,
        model=planner_model_arg(HPO_SIM, HPO_ARCH),
        simulator=HPO_SIM,
        budget=config["hpo"]["budget"],
        episodes=config["hpo"]["episodes"],
        seed=lambda wc: hpo_eval_seed(wc.round, wc.point),
        planner=PLANNER_ARGS,
    shell:
        "{params.cli} evaluate --policy planner --simulator {params.simulator} {params.model}"
        " --budget {params.budget} --episodes {params.episodes} --chunk 0/1 --seed {params.seed}"
        " --params {input.params} {params.planner} --out {output} --no-progress > {log} 2>&1"


rule hpo_summary:
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
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
    params:
        cli=CLI,
    shell:
        "{params.cli} merge-returns {input} --out {output.returns} --summary {output.summary} > {log} 2>&1"


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
    threads: 1
    resources:
        mem_mb=mem_mb(2000),
    params:
        cli=CLI,
    shell:
        "{params.cli} hpo tell --state-in {input.asked} --results {input.results} --state-out {output} > {log} 2>&1"


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
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
    params:
        cli=CLI,
    shell:
        "{params.cli} hpo best --state {input} --out {output.best} --summary {output.summary}"
        " --history {output.history} > {log} 2>&1"
