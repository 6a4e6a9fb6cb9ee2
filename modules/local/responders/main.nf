process RESPONDERS {
    tag "${meta.id}"
    label 'process_low'
    container "${params.container}"

    input:
    // prepared: the counts and labels; latents: what EXPORT added (joined by cell name);
    // model: scores over the genes on the model's residuals
    tuple val(meta), path(prepared), path(latents), path(model)

    output:
    tuple val(meta), path("*.responders.h5ad"), emit: h5ad
    tuple val(meta), path("responders.csv")   , emit: table
    path 'versions.yml'                       , emit: versions

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    def device = task.ext.use_gpu ? 'cuda' : 'cpu'
    """
    export OMP_NUM_THREADS=${task.cpus}
    pertcontrast responders \\
        '${prepared}' \\
        --latents '${latents}' \\
        --model '${model}' \\
        --device ${device} \\
        ${args} \\
        --table responders.csv \\
        --output '${prefix}.responders.h5ad'

    pertcontrast versions --process '${task.process}' > versions.yml
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch '${prefix}.responders.h5ad' responders.csv
    pertcontrast versions --process '${task.process}' > versions.yml
    """
}
