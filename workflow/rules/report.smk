# One self-contained HTML report of the run (images embedded), and the
# network-vs-ABC table.


rule report:
    input:
        report_inputs,
    output:
        html=report(
            f"{RESULTS}/report.html",
            caption="../report/report.rst",
            category="Report",
        ),
        comparison=report(
            f"{RESULTS}/abc/comparison.tsv",
            caption="../report/comparison.rst",
            category="Network vs. ABC",
        ),
    log:
        f"{RESULTS}/logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=settings("report"),
        results=subpath(output.html, parent=True),
    shell:
        "python3 -m popdl report --settings {params.settings:q} --results {params.results:q} "
        "--out {output.html:q} --comparison {output.comparison:q} 2> {log:q}"
