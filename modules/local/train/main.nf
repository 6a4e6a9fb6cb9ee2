process TRAIN {
    tag "${meta.sweep_id ? "${meta.id}:${meta.sweep_id}" : meta.id}"
    label 'process_gpu'
    container "${params.container}"
    // MLflow credentials set as Nextflow secrets reach the task as environment variables,
    // never written to the work folder (docs/mlflow.md); unset ones are left out.
    secret(secrets.MLFLOW_TRACKING_USERNAME ? 'MLFLOW_TRACKING_USERNAME' : null)
    secret(secrets.MLFLOW_TRACKING_PASSWORD ? 'MLFLOW_TRACKING_PASSWORD' : null)
    secret(secrets.MLFLOW_TRACKING_TOKEN ? 'MLFLOW_TRACKING_TOKEN' : null)

    input:
    tuple val(meta), path(prepared)
    // Checkpoints outside the work folder, so a retried or -resume'd TRAIN continues
    // from the last epoch (the CLI names them by a hash of the settings). Empty: none.
    val checkpoint_root
    // [session_id, revision]: MLflow tags, stable under -resume (the run name is not, and
    // reaches the task through the environment instead, see conf/modules.config).
    val pipeline

    output:
    tuple val(meta), path('model'), emit: model
    path 'versions.yml'           , emit: versions

    script:
    def args = task.ext.args ?: ''
    def device = task.ext.use_gpu ? 'cuda' : 'cpu'
    def run_id = meta.sweep_id ? "${meta.id}/${meta.sweep_id}" : meta.id
    def checkpoints = checkpoint_root ? "--checkpoint-dir '${checkpoint_root}/${run_id}'" : ''
    def overrides = [
        meta.max_epochs ? "--max-epochs ${meta.max_epochs}" : '',
        meta.seed != null ? "--seed ${meta.seed}" : '',
    ]
    // A sweep's settings come last and win over the sheet's and the pipeline's.
    def sweep = (meta.sweep ?: [:]).collect { name, value -> "--${name.replace('_', '-')} ${value}" }
    def tags = [
        "--screen-id '${meta.id}'",
        pipeline[0] ? "--pipeline-session-id '${pipeline[0]}'" : '',
        pipeline[1] ? "--pipeline-revision '${pipeline[1]}'" : '',
        meta.sweep_id ? "--tag 'sweep=${meta.sweep_id}'" : '',
    ]
    """
    export OMP_NUM_THREADS=${task.cpus}
    pertcontrast train \\
        '${prepared}' \\
        --device ${device} \\
        ${checkpoints} \\
        ${args} \\
        ${(overrides + sweep).join(' ')} \\
        ${tags.join(' ')} \\
        --output model

    pertcontrast versions --process '${task.process}' > versions.yml
    """

    stub:
    """
    mkdir model
    echo '{"training": {"best_validation_objective": null}}' > model/config.json
    touch model/model.pt model/history.csv
    pertcontrast versions --process '${task.process}' > versions.yml
    """
}
