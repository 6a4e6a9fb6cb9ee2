process EXPORT {
    tag "${meta.id}"
    label 'process_medium'
    container "${params.container}"
    // MLflow credentials set as Nextflow secrets reach the task as environment variables,
    // never written to the work folder (docs/mlflow.md); unset ones are left out.
    secret(secrets.MLFLOW_TRACKING_USERNAME ? 'MLFLOW_TRACKING_USERNAME' : null)
    secret(secrets.MLFLOW_TRACKING_PASSWORD ? 'MLFLOW_TRACKING_PASSWORD' : null)
    secret(secrets.MLFLOW_TRACKING_TOKEN ? 'MLFLOW_TRACKING_TOKEN' : null)

    input:
    tuple val(meta), path(prepared), path(model)
    // models:/NAME/VERSION when the model came from the registry (--model), else '': the
    // export then records the registry name, version and run, and an MLflow lookup run.
    val model_uri

    output:
    tuple val(meta), path("*.latents.h5ad"), emit: h5ad
    path 'versions.yml'                            , emit: versions

    script:
    def args = task.ext.args ?: ''
    def device = task.ext.use_gpu ? 'cuda' : 'cpu'
    def prefix = task.ext.prefix ?: "${meta.id}"
    def lookup = model_uri ? "--requested-model '${params.model}'" + (params.mlflow_uri ? " --mlflow-uri '${params.mlflow_uri}'" : '') : ''
    """
    export OMP_NUM_THREADS=${task.cpus}
    pertcontrast export \\
        '${prepared}' \\
        --model '${model_uri ?: model}' \\
        ${lookup} \\
        --device ${device} \\
        ${args} \\
        --output '${prefix}.latents.h5ad'

    pertcontrast versions --process '${task.process}' > versions.yml
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch '${prefix}.latents.h5ad'
    pertcontrast versions --process '${task.process}' > versions.yml
    """
}
