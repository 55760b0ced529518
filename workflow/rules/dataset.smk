rule dataset:
    input:
        all_features,
    output:
        manifest=f"{RESULTS}/dataset/manifest.json",
    log:
        f"{RESULTS}/logs/dataset.log",
    benchmark:
        f"{RESULTS}/benchmarks/dataset.tsv"
    conda:
        "../../envs/simulate.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        settings=settings("dataset"),
        folder=subpath(output.manifest, parent=True),
    shell:
        "python3 -m popdl dataset --settings {params.settings:q} --out {params.folder:q} "
        "{input:q} 2> {log:q}"
