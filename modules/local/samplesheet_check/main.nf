process SAMPLESHEET_CHECK {
    tag "${samplesheet.name}"
    label 'process_low'
    container "${params.container}"

    input:
    path samplesheet
    path schema
    val base_dir

    output:
    path 'samplesheet.valid.csv', emit: csv
    path 'versions.yml'         , emit: versions

    script:
    def args = task.ext.args ?: ''
    """
    pertcontrast check-samplesheet \\
        '${samplesheet}' \\
        --schema '${schema}' \\
        --base-dir '${base_dir}' \\
        ${args} \\
        --output samplesheet.valid.csv

    pertcontrast versions --process '${task.process}' > versions.yml
    """

    stub:
    """
    cp '${samplesheet}' samplesheet.valid.csv
    pertcontrast versions --process '${task.process}' > versions.yml
    """
}
