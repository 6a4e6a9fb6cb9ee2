process CALIBRATION {
    tag "${meta.id}"
    label 'process_medium'
    container "${params.container}"

    input:
    // prepared: the counts and labels; latents: what EXPORT added (salient latents and the
    // model's split of the cells, which says which controls are the null)
    tuple val(meta), path(prepared), path(latents), path(model)

    output:
    tuple val(meta), path('calibration'), emit: calibration
    path 'versions.yml'                 , emit: versions

    script:
    def args = task.ext.args ?: ''
    def device = task.ext.use_gpu ? 'cuda' : 'cpu'
    """
    export OMP_NUM_THREADS=${task.cpus}
    pertcontrast calibration \\
        '${prepared}' \\
        --latents '${latents}' \\
        --model '${model}' \\
        --device ${device} \\
        ${args} \\
        --output calibration

    pertcontrast versions --process '${task.process}' > versions.yml
    """

    stub:
    """
    mkdir calibration
    touch calibration/calibration.csv calibration/summary.json
    pertcontrast versions --process '${task.process}' > versions.yml
    """
}
