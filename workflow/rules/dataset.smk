rule dataset:
    input:
        all_features,
    output:
        manifest=f"{RESULTS}/dataset/manifest.json",
    params:
        settings=settings("dataset"),
        folder=subpath(f"{RESULTS}/dataset/manifest.json", parent=True),
    log:
        f"{RESULTS}/logs/dataset.log",
    benchmark:
        f"{RESULTS}/benchmarks/dataset.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/simulate.yaml"
    shell:
        "{PY} -m popdl dataset --settings {params.settings:q} --out {params.folder} "
        "{input} 2> {log}"
