# World models: one training job per architecture (Table 2), its validation entropy,
# and the exact Bayesian predictor's entropy (the floor of Table 2). The extra models of train.seeds and
# train.controls (models/<arch>-<variant>/, common.smk's MODELS) are the same rules with their own paths.


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


# An extra training seed or a control: the same overrides with its seed and options, trained by the same command.
use rule train_config as train_config_variant with:
    output:
        f"{OUT}/train_configs/{{arch}}-{{variant}}.yaml",
    log:
        f"{LOGS}/train_config/{{arch}}-{{variant}}.log",
    benchmark:
        f"{BENCH}/train_config/{{arch}}-{{variant}}.tsv"
    params:
        cfg=lambda wc: json.dumps(variant_train_config(wc.arch, wc.variant), sort_keys=True),


use rule train as train_variant with:
    input:
        config=f"{OUT}/train_configs/{{arch}}-{{variant}}.yaml",
        data=MANIFEST,
    output:
        model=f"{OUT}/models/{{arch}}-{{variant}}/model.pt",
        log_csv=f"{OUT}/models/{{arch}}-{{variant}}/train_log.csv",
    log:
        f"{LOGS}/train/{{arch}}-{{variant}}.log",
    benchmark:
        f"{BENCH}/train/{{arch}}-{{variant}}.tsv"
    params:
        out=lambda wc: model_dir(variant_model(wc.arch, wc.variant).name),


# The record (JSON) and each validation episode's entropy (CSV: Table 2 pairs the models on the same episodes).
rule model_eval:
    input:
        model=f"{OUT}/models/{{arch}}/model.pt",
        data=MANIFEST,
    output:
        json=f"{OUT}/model_eval/{{arch}}.json",
        episodes=f"{OUT}/model_eval/{{arch}}.csv",
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
        "alchemy-mbrl model-eval {params.args} --data {input.data} --out {output.json}"
        " --episodes-out {output.episodes} > {log} 2>&1"


use rule model_eval as model_eval_variant with:
    input:
        model=f"{OUT}/models/{{arch}}-{{variant}}/model.pt",
        data=MANIFEST,
    output:
        json=f"{OUT}/model_eval/{{arch}}-{{variant}}.json",
        episodes=f"{OUT}/model_eval/{{arch}}-{{variant}}.csv",
    log:
        f"{LOGS}/model_eval/{{arch}}-{{variant}}.log",
    benchmark:
        f"{BENCH}/model_eval/{{arch}}-{{variant}}.tsv"
    params:
        args=lambda wc: f"--model {model_dir(variant_model(wc.arch, wc.variant).name)} {max_episodes_arg()}",


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
