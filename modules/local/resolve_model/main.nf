process RESOLVE_MODEL {
    label 'process_single'
    container "${params.container}"
    // Aliases move: ask the registry on every run (never cached), then everything downstream
    // is keyed by the pinned models:/NAME/VERSION, so -resume notices a promoted alias.
    cache false

    input:
    val model_uri

    output:
    stdout emit: pinned

    script:
    def tracking = params.mlflow_uri ? "--mlflow-uri '${params.mlflow_uri}'" : ''
    """
    pertcontrast registry resolve '${model_uri}' ${tracking} | tr -d '\\n'
    """

    stub:
    """
    printf '%s' '${model_uri}'
    """
}
