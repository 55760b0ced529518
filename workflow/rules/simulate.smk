rule plan:
    output:
        f"{RESULTS}/plan/{{scenario}}.tsv",
    log:
        f"{RESULTS}/logs/plan/{{scenario}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/plan/{{scenario}}.tsv"
    conda:
        "../../envs/simulate.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        settings=settings("plan"),
    shell:
        "python3 -m popdl plan --settings {params.settings:q} --scenario {wildcards.scenario} "
        "--out {output:q} 2> {log:q}"


# Each chunk plans its own draws (the same rows as the scenario's plan table, which
# depend only on the root seed, the scenario and the draw index): raising
# simulations.per_scenario then adds chunks and leaves the simulated ones alone.
rule simulate:
    output:
        f"{RESULTS}/sims/{{scenario}}/{{chunk}}.npz",
    log:
        f"{RESULTS}/logs/simulate/{{scenario}}/{{chunk}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/simulate/{{scenario}}/{{chunk}}.tsv"
    priority: first_chunk_first
    conda:
        simulate_env
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        settings=settings("simulate"),
        start=chunk_start,
        stop=chunk_stop,
    shell:
        "python3 -m popdl simulate --settings {params.settings:q} --scenario {wildcards.scenario} "
        "--start {params.start:q} --stop {params.stop:q} --out {output:q} 2> {log:q}"
