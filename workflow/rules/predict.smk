# Observed data sets (predict.data): validated and turned into the network's
# inputs; the prior check, as soon as each scenario's first chunk is
# featurised (do the data lie among those simulations?); then the final
# network's scenario probabilities and parameter estimates, with the
# misspecification check against the simulations, and the fit check: data
# simulated from the answer against the observed ones.


rule observe:
    input:
        predict_data_files,
    output:
        npz=f"{RESULTS}/predict/{{data}}/observed.npz",
        summary=f"{RESULTS}/predict/{{data}}/observed.json",
    log:
        f"{RESULTS}/logs/observe/{{data}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/observe/{{data}}.tsv"
    priority: 10
    conda:
        "../../envs/predict.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        settings=observe_settings,
    shell:
        "python3 -m popdl observe --settings {params.settings:q} --out {output.npz:q} 2> {log:q}"


rule prior_check:
    input:
        observed=f"{RESULTS}/predict/{{data}}/observed.npz",
        features=expand(f"{RESULTS}/features/{{scenario}}/0.npz", scenario=SCENARIOS),
    output:
        json=f"{RESULTS}/predict/{{data}}/prior_check.json",
    log:
        f"{RESULTS}/logs/prior_check/{{data}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prior_check/{{data}}.tsv"
    priority: 50
    conda:
        "../../envs/predict.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=observe_settings,
        stop="--stop" if config["predict"]["prior_check"] == "stop" else "",
    shell:
        "python3 -m popdl prior-check --settings {params.settings:q} --observed {input.observed:q} "
        "--features {input.features:q} --out {output.json:q} {params.stop} 2> {log:q}"


rule predict:
    input:
        observed=f"{RESULTS}/predict/{{data}}/observed.npz",
        bundle=f"{RESULTS}/model/bundle.json",
        manifest=f"{RESULTS}/dataset/manifest.json",
    output:
        json=f"{RESULTS}/predict/{{data}}/predictions.json",
        csv=report(
            f"{RESULTS}/predict/{{data}}/predictions.csv",
            caption="../report/predictions.rst",
            category="Observed data",
            subcategory="{data}",
        ),
    log:
        f"{RESULTS}/logs/predict/{{data}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/predict/{{data}}.tsv"
    conda:
        "../../envs/predict.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        settings=observe_settings,
        model=subpath(input.bundle, parent=True),
        dataset=subpath(input.manifest, parent=True),
        folder=subpath(output.json, parent=True),
    shell:
        "python3 -m popdl predict --settings {params.settings:q} --model {params.model:q} "
        "--observed {input.observed:q} --dataset {params.dataset:q} --out {params.folder:q} 2> {log:q}"


rule check_fit:
    input:
        prediction=f"{RESULTS}/predict/{{data}}/predictions.json",
        observed=f"{RESULTS}/predict/{{data}}/observed.npz",
        bundle=f"{RESULTS}/model/bundle.json",
    output:
        json=f"{RESULTS}/predict/{{data}}/fit_check.json",
    log:
        f"{RESULTS}/logs/check_fit/{{data}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/check_fit/{{data}}.tsv"
    conda:
        check_fit_env
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        model=subpath(input.bundle, parent=True),
        replicates=config["predict"]["fit_check"],
    shell:
        "python3 -m popdl check-fit --model {params.model:q} --prediction {input.prediction:q} "
        "--observed {input.observed:q} --replicates {params.replicates} --out {output.json:q} 2> {log:q}"
