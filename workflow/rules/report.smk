# Tables 1-2 (Markdown, CSV, LaTeX, HTML) and the plots (PNG, PDF), registered in the
# Snakemake HTML report (`snakemake --report report.html`): the HTML tables and the PNGs are
# shown in it, each labelled with the scale (config `name`) that produced it. The run's scale is data:
# results/<name>/run_info.json (name, description, training steps, episodes, planner readings, commit; rule run_info),
# which every table and plot reads; its scale line starts every caption and plot title.


rule run_info:
    output:
        RUN_INFO,
    log:
        f"{LOGS}/run_info.log",
    benchmark:
        f"{BENCH}/run_info.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
    params:
        cli=CLI,
        name=NAME,
        description=config["description"],
        steps=config["train"]["steps"],
        batch=config["train"]["batch_size"],
        episodes=run_info_episodes(),
        table4="" if RUN_HPO else "--table4",
        planner=" ".join(["--planner", *planner_settings(config)]) if planner_settings(config) else "",
    shell:
        "{params.cli} report run-info --name {params.name:q} --description {params.description:q}"
        " --train-steps {params.steps} --batch-size {params.batch} --episodes {params.episodes} {params.table4}"
        " {params.planner}"
        " --out {output} > {log} 2>&1"


rule table1:
    input:
        planner=[summary_path(s, b) for s, b in planner_runs()],
        baselines=expand(f"{OUT}/baselines/{{policy}}/summary.json", policy=BASELINES),
        optimal=[optimal_summary_path(a) for a in OPTIMAL_AGENTS],
        info=RUN_INFO,
    output:
        md=f"{OUT}/tables/table1.md",
        csv=report(
            f"{OUT}/tables/table1.csv",
            caption="../report/table1.rst",
            category="Data",
            labels={"scale": NAME, "file": "Table 1 (CSV, raw numbers)"},
        ),
        tex=f"{OUT}/tables/table1.tex",
        html=report(
            f"{OUT}/tables/table1.html",
            caption="../report/table1.rst",
            category="Tables",
            labels={"scale": NAME, "table": "Table 1: score vs expansions"},
        ),
    log:
        f"{LOGS}/table1.log",
    benchmark:
        f"{BENCH}/table1.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
    params:
        cli=CLI,
        planner=" ".join(f"{s}:{b}={summary_path(s, b)}" for s, b in planner_runs()),
        baselines=" ".join(f"{p}={OUT}/baselines/{p}/summary.json" for p in BASELINES),
        optimal=" ".join(f"{a}={optimal_summary_path(a)}" for a in OPTIMAL_AGENTS),
        prefix=lambda wc, output: os.path.splitext(output.csv)[0],
    shell:
        "{params.cli} report table1 --planner {params.planner} --baseline {params.baselines}"
        " --optimal {params.optimal} --run-info {input.info}"
        " --out {params.prefix} > {log} 2>&1"


rule table2:
    input:
        evals=expand(f"{OUT}/model_eval/{{arch}}.json", arch=ARCHS),
        bayes=f"{OUT}/model_eval/bayes.json",
        info=RUN_INFO,
    output:
        md=f"{OUT}/tables/table2.md",
        csv=report(
            f"{OUT}/tables/table2.csv",
            caption="../report/table2.rst",
            category="Data",
            labels={"scale": NAME, "file": "Table 2 (CSV, raw numbers)"},
        ),
        tex=f"{OUT}/tables/table2.tex",
        html=report(
            f"{OUT}/tables/table2.html",
            caption="../report/table2.rst",
            category="Tables",
            labels={"scale": NAME, "table": "Table 2: world-model entropy"},
        ),
    log:
        f"{LOGS}/table2.log",
    benchmark:
        f"{BENCH}/table2.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
    params:
        cli=CLI,
        evals=" ".join(f"{a}={OUT}/model_eval/{a}.json" for a in ARCHS),
        prefix=lambda wc, output: os.path.splitext(output.csv)[0],
    shell:
        "{params.cli} report table2 --model-eval {params.evals} --bayes {input.bayes}"
        " --run-info {input.info}"
        " --out {params.prefix} > {log} 2>&1"


rule plot_score:
    input:
        table1=f"{OUT}/tables/table1.csv",
        info=RUN_INFO,
    output:
        png=report(
            f"{OUT}/plots/score_vs_expansions.png",
            caption="../report/score_vs_expansions.rst",
            category="Plots",
            labels={"scale": NAME, "plot": "Score vs expansions"},
        ),
        pdf=f"{OUT}/plots/score_vs_expansions.pdf",
    log:
        f"{LOGS}/plot_score.log",
    benchmark:
        f"{BENCH}/plot_score.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
    params:
        cli=CLI,
        prefix=lambda wc, output: os.path.splitext(output.png)[0],
    shell:
        "{params.cli} report plots score --table1 {input.table1} --run-info {input.info} --out {params.prefix} > {log} 2>&1"


rule plot_training:
    input:
        logs=expand(f"{OUT}/models/{{arch}}/train_log.csv", arch=ARCHS),
        bayes=f"{OUT}/model_eval/bayes.json",
        info=RUN_INFO,
    output:
        png=report(
            f"{OUT}/plots/training_curves.png",
            caption="../report/training_curves.rst",
            category="Plots",
            labels={"scale": NAME, "plot": "Training curves"},
        ),
        pdf=f"{OUT}/plots/training_curves.pdf",
    log:
        f"{LOGS}/plot_training.log",
    benchmark:
        f"{BENCH}/plot_training.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
    params:
        cli=CLI,
        logs=" ".join(f"{a}={OUT}/models/{a}/train_log.csv" for a in ARCHS),
        prefix=lambda wc, output: os.path.splitext(output.png)[0],
    shell:
        "{params.cli} report plots training --log {params.logs} --bayes {input.bayes} --run-info {input.info}"
        " --out {params.prefix} > {log} 2>&1"


rule plot_hpo:
    input:
        history=f"{OUT}/hpo/history.csv",
        info=RUN_INFO,
    output:
        png=report(
            f"{OUT}/plots/hpo_convergence.png",
            caption="../report/hpo_convergence.rst",
            category="Plots",
            labels={"scale": NAME, "plot": "HPO trials"},
        ),
        pdf=f"{OUT}/plots/hpo_convergence.pdf",
    log:
        f"{LOGS}/plot_hpo.log",
    benchmark:
        f"{BENCH}/plot_hpo.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
    params:
        cli=CLI,
        prefix=lambda wc, output: os.path.splitext(output.png)[0],
        initial=config["hpo"]["initial_points"],
    shell:
        "{params.cli} report plots hpo --history {input.history} --initial-points {params.initial}"
        " --run-info {input.info} --out {params.prefix} > {log} 2>&1"
