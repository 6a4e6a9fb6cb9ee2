process EFFECTS {
    tag "${meta.id}"
    label 'process_low'
    container "${params.container}"

    input:
    // prepared: the labels; latents and responders: what EXPORT and RESPONDERS added
    tuple val(meta), path(prepared), path(latents), path(responders), path(de)

    output:
    tuple val(meta), path('effects'), emit: effects
    path 'versions.yml'             , emit: versions

    script:
    def args = task.ext.args ?: ''
    """
    export OMP_NUM_THREADS=${task.cpus}
    pertcontrast effects \\
        '${prepared}' \\
        --latents '${latents}' \\
        --responders '${responders}' \\
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
