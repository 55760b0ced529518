# Networks: Optuna sweep as parallel worker jobs sharing one study, the best
# trial, the final model on train + validation, one evaluation on the test set
# (with the interpretation the report shows: importances, embedding, saliency).


rule tune:
    input:
        manifest=f"{RESULTS}/dataset/manifest.json",
    output:
        f"{RESULTS}/tuning/worker-{{worker}}.json",
    log:
        f"{RESULTS}/logs/tune/{{worker}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tune/{{worker}}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: config["tuning"]["threads"]
    resources:
        gpu=config["tuning"]["gpu"],
        mem_mb=4000,
        runtime=720,
    params:
        settings=settings("tune"),
        dataset=subpath(input.manifest, parent=True),
        tuning=subpath(output[0], parent=True),
    shell:
        "python3 -m popdl tune --settings {params.settings:q} --dataset {params.dataset:q} "
        "--worker {wildcards.worker} --threads {threads} --gpus {resources.gpu} --tuning-dir {params.tuning:q} "
        "--out {output:q} 2> {log:q}"


rule select_best:
    input:
        workers=tune_workers,
        manifest=f"{RESULTS}/dataset/manifest.json",
    output:
        best=f"{RESULTS}/tuning/best.json",
        table=f"{RESULTS}/tuning/trials.csv",
    log:
        f"{RESULTS}/logs/select_best.log",
    benchmark:
        f"{RESULTS}/benchmarks/select_best.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        settings=settings("select_best"),
        dataset=subpath(input.manifest, parent=True),
        tuning=subpath(output.best, parent=True),
    shell:
        "python3 -m popdl select-best --settings {params.settings:q} --dataset {params.dataset:q} "
        "--tuning-dir {params.tuning:q} "
        "--best {output.best:q} --table {output.table:q} 2> {log:q}"


rule train:
    input:
        manifest=f"{RESULTS}/dataset/manifest.json",
        best=f"{RESULTS}/tuning/best.json",
    output:
        model=f"{RESULTS}/model/model.keras",
        bundle=f"{RESULTS}/model/bundle.json",
    log:
        f"{RESULTS}/logs/train.log",
    benchmark:
        f"{RESULTS}/benchmarks/train.tsv"
    conda:
        "../../envs/train.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=config["train"]["gpu"],
        mem_mb=4000,
        runtime=720,
    params:
        settings=settings("train"),
        dataset=subpath(input.manifest, parent=True),
        folder=subpath(output.bundle, parent=True),
        tensorboard=f"{RESULTS}/logs/tensorboard",
    shell:
        "python3 -m popdl train --settings {params.settings:q} --dataset {params.dataset:q} "
        "--best {input.best:q} --threads {threads} --gpus {resources.gpu} --out {params.folder:q} "
        "--tensorboard {params.tensorboard:q} 2> {log:q}"


rule evaluate:
    input:
        manifest=f"{RESULTS}/dataset/manifest.json",
        bundle=f"{RESULTS}/model/bundle.json",
        best=f"{RESULTS}/tuning/best.json",
        trials=f"{RESULTS}/tuning/trials.csv",
    output:
        **classification_figures(),
        metrics=f"{RESULTS}/evaluation/metrics.json",
        interpretation=f"{RESULTS}/evaluation/interpretation.json",
        interpretation_arrays=f"{RESULTS}/evaluation/interpretation.npz",
        predictions=f"{RESULTS}/evaluation/test_predictions.tsv",
        parameters=report(
            f"{RESULTS}/evaluation/parameters.png",
            caption="../report/parameters.rst",
            category="Evaluation",
        ),
        curves=report(
            f"{RESULTS}/evaluation/training_curves.png",
            caption="../report/training_curves.rst",
            category="Evaluation",
        ),
    log:
        f"{RESULTS}/logs/evaluate.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        settings=settings("evaluate"),
        dataset=subpath(input.manifest, parent=True),
        model=subpath(input.bundle, parent=True),
        folder=subpath(output.metrics, parent=True),
    shell:
        "python3 -m popdl evaluate --settings {params.settings:q} --dataset {params.dataset:q} "
        "--model {params.model:q} --best {input.best:q} --trials {input.trials:q} "
        "--out {params.folder:q} 2> {log:q}"
