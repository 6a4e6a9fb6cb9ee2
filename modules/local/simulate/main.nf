process SIMULATE {
    tag "${meta.id}"
    label 'process_low'
    container "${params.container}"

    input:
    tuple val(meta), val(seed)

    output:
    tuple val(meta), path("${meta.id}.h5ad"), emit: h5ad
    path 'versions.yml'                     , emit: versions

    script:
    def args = task.ext.args ?: ''
    """
    pertcontrast simulate \\
        --seed ${seed} \\
        ${args} \\
        --output '${meta.id}.h5ad'

    pertcontrast versions --process '${task.process}' > versions.yml
    """

    stub:
    """
    touch '${meta.id}.h5ad'
    pertcontrast versions --process '${task.process}' > versions.yml
    """
}
