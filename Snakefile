# `snakemake` from the repository root (e.g. `snakemake -n`) runs the workflow of pipeline/Snakefile.
include: "pipeline/Snakefile"


rule default:  # the target of a plain `snakemake` (an included rule is not one)
    default_target: True
    input:
        rules.all.input,
