# ABC baselines on the summary statistics: rejection ABC with local-linear
# adjustment and ABC random forests, fitted on the training and validation
# simulations, scored on the same test set as the network, and applied to
# every observed data set.


rule abc:
    input:
        manifest=f"{RESULTS}/dataset/manifest.json",
        observed=all_observed,
    output:
        metrics=f"{RESULTS}/abc/metrics.json",
        empirical=f"{RESULTS}/abc/empirical.json",
        predictions=f"{RESULTS}/abc/test_predictions.tsv",
    log:
        f"{RESULTS}/logs/abc.log",
    benchmark:
        f"{RESULTS}/benchmarks/abc.tsv"
    conda:
        "../../envs/report.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        settings=settings("abc"),
        dataset=subpath(input.manifest, parent=True),
        folder=subpath(output.metrics, parent=True),
        observed=abc_observed_args,
    shell:
        "python3 -m popdl abc --settings {params.settings:q} --dataset {params.dataset:q} "
        "--out {params.folder:q} --threads {threads} {params.observed:q} 2> {log:q}"
