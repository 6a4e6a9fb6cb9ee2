process REPORT {
    tag "${meta.id}"
    label 'process_low'
    container "${params.container}"
    // MLflow credentials set as Nextflow secrets reach the task as environment variables,
    // never written to the work folder (docs/mlflow.md); unset ones are left out.
    secret(secrets.MLFLOW_TRACKING_USERNAME ? 'MLFLOW_TRACKING_USERNAME' : null)
    secret(secrets.MLFLOW_TRACKING_PASSWORD ? 'MLFLOW_TRACKING_PASSWORD' : null)
    secret(secrets.MLFLOW_TRACKING_TOKEN ? 'MLFLOW_TRACKING_TOKEN' : null)

    input:
    // prepared: the counts and labels; latents: what EXPORT added; responders, de and
    // effects are empty lists when the analysis is switched off, guide_qc when the screen
    // did not go through ASSIGN_GUIDES, calibration when CALIBRATION did not run.
    tuple val(meta), path(prepared), path(latents), path(model), path(responders), path(de), path(effects), path(guide_qc), path(calibration)

    output:
    tuple val(meta), path('report')                   , emit: report
    tuple val(meta), path('report/*.report.json')     , emit: json
    path 'versions.yml'                               , emit: versions

    script:
    def args = task.ext.args ?: ''
    def analysis = [
        responders ? "--responders '${responders}'" : '',
        de ? "--de '${de}'" : '',
        effects ? "--effects '${effects}'" : '',
        guide_qc ? "--guide-qc '${guide_qc}'" : '',
        calibration ? "--calibration '${calibration}'" : '',
    ].join(' ')
    """
    export OMP_NUM_THREADS=${task.cpus}
    pertcontrast report \\
        '${prepared}' \\
        --latents '${latents}' \\
        --model '${model}' \\
        ${analysis} \\
        --title '${meta.id}' \\
        ${args} \\
        --output-dir report

    pertcontrast versions --process '${task.process}' > versions.yml
    """

    stub:
    """
    mkdir -p report/figures
    touch 'report/${meta.id}.report.html' 'report/${meta.id}.report.json'
    pertcontrast versions --process '${task.process}' > versions.yml
    """
}
