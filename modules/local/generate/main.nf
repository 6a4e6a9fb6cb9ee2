process GENERATE {
    tag "${meta.id}"
    label 'process_medium'
    container "${params.container}"

    input:
    tuple val(meta), path(prepared), path(model)

    output:
    tuple val(meta), path("*.generated.h5ad"), emit: h5ad
    path 'versions.yml'                      , emit: versions

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def device = task.ext.use_gpu ? 'cuda' : 'cpu'
    """
    export OMP_NUM_THREADS=${task.cpus}
    pertcontrast generate \\
        '${prepared}' \\
        --model '${model}' \\
        --device ${device} \\
        ${args} \\
        --output '${prefix}.generated.h5ad'

    pertcontrast versions --process '${task.process}' > versions.yml
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch '${prefix}.generated.h5ad'
    pertcontrast versions --process '${task.process}' > versions.yml
    """
}
