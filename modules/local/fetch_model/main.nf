process FETCH_MODEL {
    tag "${pinned_uri}"
    label 'process_single'
    container "${params.container}"
    // MLflow credentials set as Nextflow secrets reach the task as environment variables,
    // never written to the work folder (docs/mlflow.md); unset ones are left out.
    secret(secrets.MLFLOW_TRACKING_USERNAME ? 'MLFLOW_TRACKING_USERNAME' : null)
    secret(secrets.MLFLOW_TRACKING_PASSWORD ? 'MLFLOW_TRACKING_PASSWORD' : null)
    secret(secrets.MLFLOW_TRACKING_TOKEN ? 'MLFLOW_TRACKING_TOKEN' : null)

    input:
    val pinned_uri     // models:/NAME/VERSION
    val requested_uri  // what the user asked for (models:/NAME@ALIAS), recorded beside it

    output:
    path 'model'        , emit: model
    path 'versions.yml' , emit: versions

    script:
    def args = task.ext.args ?: ''
    def tracking = params.mlflow_uri ? "--mlflow-uri '${params.mlflow_uri}'" : ''
    """
    pertcontrast registry download '${pinned_uri}' \\
        --requested-model '${requested_uri}' \\
        ${tracking} \\
        ${args} \\
        --output model

    pertcontrast versions --process '${task.process}' > versions.yml
    """

    stub:
    """
    mkdir model
    touch model/config.json model/model.pt model/registry.json
    pertcontrast versions --process '${task.process}' > versions.yml
    """
}
