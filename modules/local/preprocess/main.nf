process PREPROCESS {
    tag "${meta.id}"
    label 'process_medium'
    container "${params.container}"

    input:
    tuple val(meta), path(counts)

    output:
    tuple val(meta), path("*.prepared.h5ad"), emit: h5ad
    path 'versions.yml'                             , emit: versions

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def batch = meta.batch_key ? "--batch-key '${meta.batch_key}'" : ''
    def top_genes = meta.n_top_genes ? "--n-top-genes ${meta.n_top_genes}" : ''
    """
    export OMP_NUM_THREADS=${task.cpus}
    pertcontrast preprocess \\
        '${counts}' \\
        --perturbation-key '${meta.perturbation_key}' \\
        --control-label '${meta.control_label}' \\
        ${batch} \\
        ${args} \\
        ${top_genes} \\
        --output '${prefix}.prepared.h5ad'

    pertcontrast versions --process '${task.process}' > versions.yml
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch '${prefix}.prepared.h5ad'
    pertcontrast versions --process '${task.process}' > versions.yml
    """
}
