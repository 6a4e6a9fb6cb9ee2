process ASSIGN_GUIDES {
    tag "${meta.id}"
    label 'process_medium'
    container "${params.container}"

    input:
    // guides: the guide matrix or calls table, or an empty list when counts carries the
    // CRISPR Guide Capture features itself
    tuple val(meta), path(counts), path(guides), path(guide_table)

    output:
    tuple val(meta), path("*.guides.h5ad"), emit: h5ad
    tuple val(meta), path('guide_qc')     , emit: qc
    path 'versions.yml'                   , emit: versions

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def guide_data = guides ? "--guides '${guides}'" : ''
    """
    export OMP_NUM_THREADS=${task.cpus}
    pertcontrast assign-guides \\
        '${counts}' \\
        --guide-table '${guide_table}' \\
        ${guide_data} \\
        --perturbation-key '${meta.perturbation_key}' \\
        ${args} \\
        --output '${prefix}.guides.h5ad' \\
        --qc-dir guide_qc

    pertcontrast versions --process '${task.process}' > versions.yml
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir -p guide_qc
    touch '${prefix}.guides.h5ad' guide_qc/guides.csv guide_qc/perturbations.csv guide_qc/summary.json
    pertcontrast versions --process '${task.process}' > versions.yml
    """
}
