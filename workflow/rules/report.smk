# Tables 1-2 (Markdown, CSV, LaTeX) and the plots (PNG, PDF), registered in the
# Snakemake HTML report (`snakemake --report report.html`).


rule table1:
    input:
        planner=[summary_path(s, b) for s, b in planner_runs()],
        baselines=expand("results/baselines/{policy}/summary.json", policy=BASELINES),
    output:
        md="results/tables/table1.md",
        csv=report("results/tables/table1.csv", caption="../report/table1.rst", category="Tables"),
        tex="results/tables/table1.tex",
    log:
        "logs/table1.log",
    benchmark:
        "benchmarks/table1.tsv"
    params:
        cli=CLI,
        planner=" ".join(f"{s}:{b}={summary_path(s, b)}" for s, b in planner_runs()),
        baselines=" ".join(f"{p}=results/baselines/{p}/summary.json" for p in BASELINES),
        prefix=lambda wc, output: os.path.splitext(output.csv)[0],
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
    conda:
        ENV
    shell:
        "{params.cli} report table1 --planner {params.planner} --baseline {params.baselines}"
        " --out {params.prefix} > {log} 2>&1"


rule table2:
    input:
        evals=expand("results/model_eval/{arch}.json", arch=ARCHS),
        bayes="results/model_eval/bayes.json",
    output:
        md="results/tables/table2.md",
        csv=report("results/tables/table2.csv", caption="../report/table2.rst", category="Tables"),
        tex="results/tables/table2.tex",
    log:
        "logs/table2.log",
    benchmark:
        "benchmarks/table2.tsv"
    params:
        cli=CLI,
        evals=" ".join(f"{a}=results/model_eval/{a}.json" for a in ARCHS),
        prefix=lambda wc, output: os.path.splitext(output.csv)[0],
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
    conda:
        ENV
    shell:
        "{params.cli} report table2 --model-eval {params.evals} --bayes {input.bayes} --out {params.prefix} > {log} 2>&1"


rule plot_score:
    input:
        "results/tables/table1.csv",
    output:
        png=report("results/plots/score_vs_expansions.png", caption="../report/score_vs_expansions.rst", category="Plots"),
        pdf="results/plots/score_vs_expansions.pdf",
    log:
        "logs/plot_score.log",
    benchmark:
        "benchmarks/plot_score.tsv"
    params:
        cli=CLI,
        prefix=lambda wc, output: os.path.splitext(output.png)[0],
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
    conda:
        ENV
    shell:
        "{params.cli} report plots score --table1 {input} --out {params.prefix} > {log} 2>&1"


rule plot_training:
    input:
        expand("results/models/{arch}/train_log.csv", arch=ARCHS),
    output:
        png=report("results/plots/training_curves.png", caption="../report/training_curves.rst", category="Plots"),
        pdf="results/plots/training_curves.pdf",
    log:
        "logs/plot_training.log",
    benchmark:
        "benchmarks/plot_training.tsv"
    params:
        cli=CLI,
        logs=" ".join(f"{a}=results/models/{a}/train_log.csv" for a in ARCHS),
        prefix=lambda wc, output: os.path.splitext(output.png)[0],
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
    conda:
        ENV
    shell:
        "{params.cli} report plots training --log {params.logs} --out {params.prefix} > {log} 2>&1"


rule plot_hpo:
    input:
        "results/hpo/history.csv",
    output:
        png=report("results/plots/hpo_convergence.png", caption="../report/hpo_convergence.rst", category="Plots"),
        pdf="results/plots/hpo_convergence.pdf",
    log:
        "logs/plot_hpo.log",
    benchmark:
        "benchmarks/plot_hpo.tsv"
    params:
        cli=CLI,
        prefix=lambda wc, output: os.path.splitext(output.png)[0],
    threads: 1
    resources:
        mem_mb=mem_mb(1000),
    conda:
        ENV
    shell:
        "{params.cli} report plots hpo --history {input} --out {params.prefix} > {log} 2>&1"
