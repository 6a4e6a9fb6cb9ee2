process TRAIN {
    tag "${meta.id}"
    label 'process_gpu'
    container "${params.container}"

    input:
    tuple val(meta), path(prepared)
    // Checkpoints outside the work folder, so a retried or -resume'd TRAIN continues
    // from the last epoch (the CLI names them by a hash of the settings). Empty: none.
    val checkpoint_root

    output:
    tuple val(meta), path('model'), emit: model
    path 'versions.yml'           , emit: versions

    script:
    def args = task.ext.args ?: ''
    def device = task.ext.use_gpu ? 'cuda' : 'cpu'
    def checkpoints = checkpoint_root ? "--checkpoint-dir '${checkpoint_root}/${meta.id}'" : ''
    def overrides = [
        meta.max_epochs ? "--max-epochs ${meta.max_epochs}" : '',
        meta.seed != null ? "--seed ${meta.seed}" : '',
    ].join(' ')
    """
    export OMP_NUM_THREADS=${task.cpus}
    pertcontrast train \\
        '${prepared}' \\
        --device ${device} \\
        ${checkpoints} \\
        ${args} \\
        ${overrides} \\
        --no-progress \\
        --output model

    pertcontrast versions --process '${task.process}' > versions.yml
    """

    stub:
    """
    mkdir model
    touch model/config.json model/model.pt model/history.csv
    pertcontrast versions --process '${task.process}' > versions.yml
    """
}
