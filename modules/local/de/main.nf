process DE {
    tag "${meta.id}"
    label 'process_medium'
    container "${params.container}"

    input:
    tuple val(meta), path(cells), path(model)

    output:
    tuple val(meta), path('de'), emit: de
    path 'versions.yml'        , emit: versions

    script:
    def args = task.ext.args ?: ''
    def device = task.ext.use_gpu ? 'cuda' : 'cpu'
    """
    export OMP_NUM_THREADS=${task.cpus}
    pertcontrast de \\
        '${cells}' \\
        --model '${model}' \\
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
