rule features:
    input:
        sims=f"{RESULTS}/sims/{{scenario}}/{{chunk}}.npz",
    output:
        f"{RESULTS}/features/{{scenario}}/{{chunk}}.npz",
    params:
        settings=settings("features"),
    log:
        f"{RESULTS}/logs/features/{{scenario}}/{{chunk}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/features/{{scenario}}/{{chunk}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../../envs/simulate.yaml"
    shell:
        "{PY} -m popdl features --settings {params.settings:q} --sims {input.sims} "
        "--out {output} 2> {log}"
