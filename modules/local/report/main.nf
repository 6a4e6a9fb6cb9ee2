process REPORT {
    tag "${meta.id}"
    label 'process_low'
    container "${params.container}"

    input:
    // prepared: the counts and labels; latents: what EXPORT added; responders, de and
    // effects are empty lists when the analysis is switched off.
    tuple val(meta), path(prepared), path(latents), path(model), path(responders), path(de), path(effects)

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
