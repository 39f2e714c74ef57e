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
    params:
        args=run_info_args(),
    shell:
        "alchemy-mbrl report run-info {params.args} --out {output} > {log} 2>&1"


# Every table and plot is this rule with its own paths and `report` arguments.
rule table1:
    input:
        summaries=table1_summaries(),
        returns=list(table1_returns().values()),
        info=RUN_INFO,
    output:
        md=f"{OUT}/tables/table1.md",
        csv=report_of(f"{OUT}/tables/table1.csv", "table1", "Data", file="Table 1 (CSV, raw numbers)"),
        tex=f"{OUT}/tables/table1.tex",
        html=report_of(f"{OUT}/tables/table1.html", "table1", "Tables", table="Table 1: score vs expansions"),
    log:
        f"{LOGS}/table1.log",
    benchmark:
        f"{BENCH}/table1.tsv"
    conda:
        ENV
    params:
        what=table1_args(),
        prefix=report_prefix,
    shell:
        "alchemy-mbrl report {params.what} --run-info {input.info} --out {params.prefix} > {log} 2>&1"


# Table 1 with the learned rows of evaluate.long_budgets too (the target all_long).
use rule table1 as table1_long with:
    input:
        summaries=table1_summaries(long=True),
        returns=list(table1_returns(long=True).values()),
        info=RUN_INFO,
    output:
        md=f"{OUT}/tables/table1_long.md",
        csv=report_of(f"{OUT}/tables/table1_long.csv", "table1", "Data", file="Table 1 with long budgets (CSV)"),
        tex=f"{OUT}/tables/table1_long.tex",
        html=report_of(f"{OUT}/tables/table1_long.html", "table1", "Tables", table="Table 1 with long budgets"),
    log:
        f"{LOGS}/table1_long.log",
    benchmark:
        f"{BENCH}/table1_long.tsv"
    params:
        what=table1_args(long=True),
        prefix=report_prefix,


use rule table1 as table2 with:
    input:
        evals=table2_inputs(),
        bayes=f"{OUT}/model_eval/bayes.json",
        info=RUN_INFO,
    output:
        md=f"{OUT}/tables/table2.md",
        csv=report_of(f"{OUT}/tables/table2.csv", "table2", "Data", file="Table 2 (CSV, raw numbers)"),
        tex=f"{OUT}/tables/table2.tex",
        html=report_of(f"{OUT}/tables/table2.html", "table2", "Tables", table="Table 2: world-model entropy"),
    log:
        f"{LOGS}/table2.log",
    benchmark:
        f"{BENCH}/table2.tsv"
    params:
        what=table2_args(),
        prefix=report_prefix,


use rule table1 as plot_score with:
    input:
        table1=f"{OUT}/tables/table1.csv",
        info=RUN_INFO,
    output:
        png=report_of(
            f"{OUT}/plots/score_vs_expansions.png", "score_vs_expansions", "Plots", plot="Score vs expansions"
        ),
        pdf=f"{OUT}/plots/score_vs_expansions.pdf",
    log:
        f"{LOGS}/plot_score.log",
    benchmark:
        f"{BENCH}/plot_score.tsv"
    params:
        what=f"plots score --table1 {OUT}/tables/table1.csv",
        prefix=report_prefix,


use rule table1 as plot_score_long with:
    input:
        table1=f"{OUT}/tables/table1_long.csv",
        info=RUN_INFO,
    output:
        png=report_of(
            f"{OUT}/plots/score_vs_expansions_long.png",
            "score_vs_expansions",
            "Plots",
            plot="Score vs expansions (long budgets)",
        ),
        pdf=f"{OUT}/plots/score_vs_expansions_long.pdf",
    log:
        f"{LOGS}/plot_score_long.log",
    benchmark:
        f"{BENCH}/plot_score_long.tsv"
    params:
        what=f"plots score --table1 {OUT}/tables/table1_long.csv",
        prefix=report_prefix,


use rule table1 as plot_training with:
    input:
        logs=expand(f"{OUT}/models/{{arch}}/train_log.csv", arch=ARCHS),
        bayes=f"{OUT}/model_eval/bayes.json",
        info=RUN_INFO,
    output:
        png=report_of(f"{OUT}/plots/training_curves.png", "training_curves", "Plots", plot="Training curves"),
        pdf=f"{OUT}/plots/training_curves.pdf",
    log:
        f"{LOGS}/plot_training.log",
    benchmark:
        f"{BENCH}/plot_training.tsv"
    params:
        what=f"plots training --log {per_arch('models/{a}/train_log.csv')} --bayes {OUT}/model_eval/bayes.json",
        prefix=report_prefix,


use rule table1 as plot_hpo with:
    input:
        history=f"{OUT}/hpo/history.csv",
        info=RUN_INFO,
    output:
        png=report_of(f"{OUT}/plots/hpo_convergence.png", "hpo_convergence", "Plots", plot="HPO trials"),
        pdf=f"{OUT}/plots/hpo_convergence.pdf",
    log:
        f"{LOGS}/plot_hpo.log",
    benchmark:
        f"{BENCH}/plot_hpo.tsv"
    params:
        what=f"plots hpo --history {OUT}/hpo/history.csv --initial-points {config['hpo']['initial_points']}",
        prefix=report_prefix,
