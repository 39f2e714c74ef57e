# World models: one training job per architecture (Table 2), its validation entropy,
# and the exact Bayesian predictor's entropy (the floor of Table 2).


# Writes the training overrides of `alchemy-mbrl train --config` (JSON, a subset of YAML) from the
# workflow config, so that editing train.* re-runs training (Snakemake tracks params).
rule train_config:
    output:
        f"{OUT}/train_configs/{{arch}}.yaml",
    log:
        f"{LOGS}/train_config/{{arch}}.log",
    benchmark:
        f"{BENCH}/train_config/{{arch}}.tsv"
    priority: 2
    localrule: True
    conda:
        ENV
    params:
        cfg=lambda wc: json.dumps(train_config(wc.arch), sort_keys=True),
    shell:
        "printf '%s\\n' {params.cfg:q} > {output} 2> {log}"


rule train:
    input:
        config=f"{OUT}/train_configs/{{arch}}.yaml",
        data=MANIFEST,
    output:
        model=f"{OUT}/models/{{arch}}/model.pt",
        log_csv=f"{OUT}/models/{{arch}}/train_log.csv",
    log:
        f"{LOGS}/train/{{arch}}.log",
    benchmark:
        f"{BENCH}/train/{{arch}}.tsv"
    priority: 1
    conda:
        ENV
    resources:
        mem_mb=mem_mb(32000),
        gpu=GPU,
    params:
        out=lambda wc: model_dir(wc.arch),
    shell:
        "alchemy-mbrl train --config {input.config} --data {input.data} --arch {wildcards.arch}"
        " --out {params.out} --no-progress > {log} 2>&1"


rule model_eval:
    input:
        model=f"{OUT}/models/{{arch}}/model.pt",
        data=MANIFEST,
    output:
        f"{OUT}/model_eval/{{arch}}.json",
    log:
        f"{LOGS}/model_eval/{{arch}}.log",
    benchmark:
        f"{BENCH}/model_eval/{{arch}}.tsv"
    conda:
        ENV
    resources:
        mem_mb=mem_mb(32000),
        gpu=GPU,
    params:
        args=lambda wc: f"--model {model_dir(wc.arch)} {max_episodes_arg()}",
    shell:
        "alchemy-mbrl model-eval {params.args} --data {input.data} --out {output} > {log} 2>&1"


rule bayes_entropy:
    input:
        data=MANIFEST,
    output:
        f"{OUT}/model_eval/bayes.json",
    log:
        f"{LOGS}/bayes_entropy.log",
    benchmark:
        f"{BENCH}/bayes_entropy.tsv"
    conda:
        ENV
    resources:
        mem_mb=mem_mb(16000),
    params:
        max_episodes=max_episodes_arg(),
    shell:
        "alchemy-mbrl bayes-entropy --data {input.data} {params.max_episodes} --out {output} --no-progress > {log} 2>&1"
