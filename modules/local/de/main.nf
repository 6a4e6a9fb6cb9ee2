process DE {
    tag "${meta.id}"
    label 'process_medium'
    container "${params.container}"

    input:
    // prepared: the counts; responders: the per-cell calls RESPONDERS added (joined by cell name)
    tuple val(meta), path(prepared), path(responders), path(model)

    output:
    tuple val(meta), path('de'), emit: de
    path 'versions.yml'        , emit: versions

    script:
    def args = task.ext.args ?: ''
    def device = task.ext.use_gpu ? 'cuda' : 'cpu'
    """
    export OMP_NUM_THREADS=${task.cpus}
    pertcontrast de \\
        '${prepared}' \\
        --model '${model}' \\
        --responders '${responders}' \\
        --device ${device} \\
        ${args} \\
        --output de

    pertcontrast versions --process '${task.process}' > versions.yml
    """

    stub:
    """
    mkdir de
    touch de/de.parquet de/de.csv.gz de/de_top.csv de/de_settings.json
    pertcontrast versions --process '${task.process}' > versions.yml
    """
}
