# Networks: Optuna sweep as parallel worker jobs sharing one study, the best
# trial, the final model on train + validation, one evaluation on the test set.


rule tune:
    input:
        manifest=f"{RESULTS}/dataset/manifest.json",
    output:
        f"{RESULTS}/tuning/worker-{{worker}}.json",
    params:
        settings=settings("tune"),
        dataset=subpath(f"{RESULTS}/dataset/manifest.json", parent=True),
        tuning=f"{RESULTS}/tuning",
    log:
        f"{RESULTS}/logs/tune/{{worker}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tune/{{worker}}.tsv"
    threads: config["tuning"]["threads"]
    resources:
        gpu=config["tuning"]["gpu"],
        mem_mb=4000,
        runtime=720,
    conda:
        "../../envs/train.yaml"
    shell:
        "{PY} -m popdl tune --settings {params.settings:q} --dataset {params.dataset} "
        "--worker {wildcards.worker} --tuning-dir {params.tuning} --out {output} 2> {log}"


rule select_best:
    input:
        tune_workers,
    output:
        best=f"{RESULTS}/tuning/best.json",
        table=f"{RESULTS}/tuning/trials.csv",
    params:
        settings=settings("select_best"),
        tuning=f"{RESULTS}/tuning",
    log:
        f"{RESULTS}/logs/select_best.log",
    benchmark:
        f"{RESULTS}/benchmarks/select_best.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/train.yaml"
    shell:
        "{PY} -m popdl select-best --settings {params.settings:q} --tuning-dir {params.tuning} "
        "--best {output.best} --table {output.table} 2> {log}"


rule train:
    input:
        manifest=f"{RESULTS}/dataset/manifest.json",
        best=f"{RESULTS}/tuning/best.json",
    output:
        model=f"{RESULTS}/model/model.keras",
        bundle=f"{RESULTS}/model/bundle.json",
    params:
        settings=settings("train"),
        dataset=subpath(f"{RESULTS}/dataset/manifest.json", parent=True),
        folder=subpath(f"{RESULTS}/model/bundle.json", parent=True),
        tensorboard=f"{RESULTS}/logs/tensorboard",
    log:
        f"{RESULTS}/logs/train.log",
    benchmark:
        f"{RESULTS}/benchmarks/train.tsv"
    threads: config["train"]["threads"]
    resources:
        gpu=config["train"]["gpu"],
        mem_mb=4000,
        runtime=720,
    conda:
        "../../envs/train.yaml"
    shell:
        "{PY} -m popdl train --settings {params.settings:q} --dataset {params.dataset} "
        "--best {input.best} --out {params.folder} --tensorboard {params.tensorboard} 2> {log}"


rule evaluate:
    input:
        manifest=f"{RESULTS}/dataset/manifest.json",
        bundle=f"{RESULTS}/model/bundle.json",
        best=f"{RESULTS}/tuning/best.json",
    output:
        metrics=f"{RESULTS}/evaluation/metrics.json",
        confusion=report(
            f"{RESULTS}/evaluation/confusion_matrix.png",
            caption="../report/confusion_matrix.rst",
            category="Evaluation",
        ),
        calibration=report(
            f"{RESULTS}/evaluation/calibration.png",
            caption="../report/calibration.rst",
            category="Evaluation",
        ),
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
    params:
        settings=settings("evaluate"),
        dataset=subpath(f"{RESULTS}/dataset/manifest.json", parent=True),
        model=subpath(f"{RESULTS}/model/bundle.json", parent=True),
        folder=subpath(f"{RESULTS}/evaluation/metrics.json", parent=True),
    log:
        f"{RESULTS}/logs/evaluate.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../../envs/train.yaml"
    shell:
        "{PY} -m popdl evaluate --settings {params.settings:q} --dataset {params.dataset} "
        "--model {params.model} --best {input.best} --out {params.folder} 2> {log}"
