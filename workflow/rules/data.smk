# Data, training and HPO rules have a priority above the rest, so that the critical path
# (data -> the HPO's model -> HPO -> learned-model rows) runs first and the independent
# perfect-model and baseline rows fill the gaps.
#
# Dataset: one job per HDF5 shard of uniform-random episodes, then the manifest
# (checksums; the last data.validation_shards shards are the validation split).


rule generate_shard:
    output:
        f"{OUT}/data/shard-{{shard}}.h5",
    log:
        f"{LOGS}/generate_shard/{{shard}}.log",
    benchmark:
        f"{BENCH}/generate_shard/{{shard}}.tsv"
    priority: 2
    conda:
        ENV
    resources:
        mem_mb=mem_mb(4000),
    params:
        args=lambda wc: shard_args(wc.shard),
    shell:
        "alchemy-mbrl generate {params.args} --out {output} --no-progress > {log} 2>&1"


rule manifest:
    input:
        expand(f"{OUT}/data/shard-{{shard}}.h5", shard=SHARDS),
    output:
        MANIFEST,
    log:
        f"{LOGS}/manifest.log",
    benchmark:
        f"{BENCH}/manifest.tsv"
    priority: 2
    conda:
        ENV
    params:
        validation=config["data"]["validation_shards"],
    shell:
        "alchemy-mbrl data manifest {input} --validation {params.validation} --out {output} > {log} 2>&1"
