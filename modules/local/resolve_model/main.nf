process RESOLVE_MODEL {
    tag "${model_uri}"
    label 'process_single'
    container "${params.container}"
    // MLflow credentials set as Nextflow secrets reach the task as environment variables,
    // never written to the work folder (docs/mlflow.md); unset ones are left out.
    secret(secrets.MLFLOW_TRACKING_USERNAME ? 'MLFLOW_TRACKING_USERNAME' : null)
    secret(secrets.MLFLOW_TRACKING_PASSWORD ? 'MLFLOW_TRACKING_PASSWORD' : null)
    secret(secrets.MLFLOW_TRACKING_TOKEN ? 'MLFLOW_TRACKING_TOKEN' : null)
    // Aliases move: ask the registry on every run (never cached), then everything downstream
    // is keyed by the pinned models:/NAME/VERSION, so -resume notices a promoted alias.
    cache false

    input:
    val model_uri

    output:
    stdout emit: pinned
    path 'versions.yml', emit: versions

    script:
    def args = task.ext.args ?: ''
    def tracking = params.mlflow_uri ? "--mlflow-uri '${params.mlflow_uri}'" : ''
    """
    pertcontrast registry resolve '${model_uri}' ${tracking} ${args} | tr -d '\\n'
    pertcontrast versions --process '${task.process}' > versions.yml
    """

    stub:
    """
    printf '%s' '${model_uri}'
    pertcontrast versions --process '${task.process}' > versions.yml
    """
}
