process SUMMARY {
    tag "${[report_jsons].flatten().size()} screens"
    label 'process_single'
    container "${params.container}"

    input:
    path report_jsons, stageAs: 'screens/*'

    output:
    path 'summary'     , emit: summary
    path 'versions.yml', emit: versions

    script:
    def args = task.ext.args ?: ''
    // One screen stages a single path, several a list: flatten() treats both alike.
    def reports = [report_jsons].flatten().collect { json -> "--report-json '${json}'" }.join(' ')
    """
    pertcontrast summary \\
        ${reports} \\
        --link-template '../{id}/report/{html}' \\
        ${args} \\
        --output summary/index.html

    pertcontrast versions --process '${task.process}' > versions.yml
    """

    stub:
    """
    mkdir summary
    touch summary/index.html
    pertcontrast versions --process '${task.process}' > versions.yml
    """
}
