process EFFECTS {
    tag "${meta.id}"
    label 'process_low'
    container "${params.container}"

    input:
    tuple val(meta), path(cells), path(de)

    output:
    tuple val(meta), path('effects'), emit: effects
    path 'versions.yml'             , emit: versions

    script:
    def args = task.ext.args ?: ''
    """
    export OMP_NUM_THREADS=${task.cpus}
    pertcontrast effects \\
        '${cells}' \\
        --de '${de}' \\
        ${args} \\
        --output effects

    pertcontrast versions --process '${task.process}' > versions.yml
    """

    stub:
    """
    mkdir effects
    touch effects/effects.csv effects/perturbation_clusters.csv effects/perturbation_similarity.csv effects/gene_programs.csv
    pertcontrast versions --process '${task.process}' > versions.yml
    """
}
