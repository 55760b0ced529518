# Genome scans: the final network slid along every contig of a VCF, window by
# window (e.g. selective sweeps); per-window class probabilities as TSV and
# BED, and the target class's probability along each contig as a PNG.


rule scan:
    input:
        bundle=f"{RESULTS}/model/bundle.json",
        vcf=scan_vcf,
        popmap=scan_popmap,
    output:
        tsv=f"{RESULTS}/scan/{{name}}.tsv",
        bed=f"{RESULTS}/scan/{{name}}.bed",
        summary=f"{RESULTS}/scan/{{name}}.json",
        plot=report(
            f"{RESULTS}/scan/{{name}}.png",
            caption="../report/scan.rst",
            category="Genome scan",
        ),
    log:
        f"{RESULTS}/logs/scan/{{name}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/scan/{{name}}.tsv"
    conda:
        "../../envs/scan.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        settings=scan_settings,
        model=subpath(input.bundle, parent=True),
        prefix=subpath(output.tsv, strip_suffix=".tsv"),
        popmap=scan_popmap_arg,
    shell:
        "python3 -m popdl scan --settings {params.settings:q} --model {params.model:q} --vcf {input.vcf:q} "
        "{params.popmap:q} --name {wildcards.name} --out {params.prefix:q} 2> {log:q}"
