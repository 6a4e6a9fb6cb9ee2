process MLFLOW_STORE {
    tag "${[models].flatten().size()} runs"
    label 'process_single'
    container "${params.container}"

    input:
    // Every TRAIN's model folder (each holds its run record, mlflow_run.json), staged
    // side by side under numbered folders since they are all named 'model'.
    path models, stageAs: 'models/run_?/*'
    // [screen ids, their report folders] in the same order ([[], []]: no reports).
    tuple val(report_ids), path(reports, stageAs: 'reports/report_?/*')
    // Where each screen's input is published, '{screen}' for its id: the runs' datasets
    // point there, not at the tasks' work copies.
    val dataset_source

    output:
    path 'mlflow'      , emit: store
    path 'versions.yml', emit: versions

    script:
    def args = task.ext.args ?: ''
    // One item stages a single path, several a list: flatten() treats both alike.
    def folders = [models].flatten().collect { folder -> "'${folder}'" }.join(' ')
    def attach = [report_ids, [reports].flatten()].transpose().collect { id, report -> "--report '${id}=${report}'" }.join(' ')
    """
    pertcontrast mlflow store \\
        ${folders} \\
        ${attach} \\
        --dataset-source '${dataset_source}' \\
        ${args} \\
        --output mlflow

    pertcontrast versions --process '${task.process}' > versions.yml
    """

    stub:
    """
    mkdir -p mlflow/artifacts
    touch mlflow/mlflow.db
    pertcontrast versions --process '${task.process}' > versions.yml
    """
}
