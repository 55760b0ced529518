rule plan:
    output:
        f"{RESULTS}/plan/{{scenario}}.tsv",
    params:
        settings=settings("plan"),
    log:
        f"{RESULTS}/logs/plan/{{scenario}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/plan/{{scenario}}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        "../../envs/simulate.yaml"
    shell:
        "{PY} -m popdl plan --settings {params.settings:q} --scenario {wildcards.scenario} "
        "--out {output} 2> {log}"


rule simulate:
    input:
        plan=f"{RESULTS}/plan/{{scenario}}.tsv",
    output:
        f"{RESULTS}/sims/{{scenario}}/{{chunk}}.npz",
    params:
        settings=settings("simulate"),
        start=chunk_start,
        stop=chunk_stop,
    log:
        f"{RESULTS}/logs/simulate/{{scenario}}/{{chunk}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/simulate/{{scenario}}/{{chunk}}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    conda:
        "../../envs/simulate.yaml"
    shell:
        "{PY} -m popdl simulate --settings {params.settings:q} --scenario {wildcards.scenario} "
        "--plan {input.plan} --start {params.start} --stop {params.stop} --out {output} 2> {log}"
