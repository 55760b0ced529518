rule features:
    input:
        sims=f"{RESULTS}/sims/{{scenario}}/{{chunk}}.npz",
    output:
        f"{RESULTS}/features/{{scenario}}/{{chunk}}.npz",
    log:
        f"{RESULTS}/logs/features/{{scenario}}/{{chunk}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/features/{{scenario}}/{{chunk}}.tsv"
    priority: first_chunk_first
    conda:
        "../../envs/simulate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        settings=settings("features"),
    shell:
        "python3 -m popdl features --settings {params.settings:q} --sims {input.sims:q} "
        "--out {output:q} 2> {log:q}"
