/*
 * Check the samplesheet (pertcontrast check-samplesheet, against assets/schema_input.json)
 * and turn its rows into [ meta, counts ], and the rows with a guide table into
 * [ meta, guides or [], guide_table ]. Every later step waits on the checked sheet, so a
 * bad sheet fails here, naming the row and column, before any work starts.
 */

include { SAMPLESHEET_CHECK } from '../../../modules/local/samplesheet_check'

workflow INPUT_CHECK {
    take:
    samplesheet  // path: the user's samplesheet (CSV or TSV)
    schema       // path: assets/schema_input.json
    base_dir     // string: folder relative paths in the sheet are resolved from

    main:
    SAMPLESHEET_CHECK(samplesheet, schema, base_dir)

    rows = SAMPLESHEET_CHECK.out.csv.splitCsv(header: true, strip: true)
    screens = rows.map { row -> screenFromRow(row) }
    guides = rows
        .filter { row -> row.guide_table }
        .map { row -> [ [ id: row.id ], row.guides ? file(row.guides, checkIfExists: true) : [], file(row.guide_table, checkIfExists: true) ] }

    emit:
    screens                                      // channel: [ val(meta), path(counts) ]
    guides                                       // channel: [ val(meta), path(guides) or [], path(guide_table) ]
    versions = SAMPLESHEET_CHECK.out.versions    // channel: path(versions.yml)
}

// The checked sheet writes missing optional values as empty cells: keep them as null so
// `meta.x ? ... : ...` means "not given".
def screenFromRow(Map row) {
    def value = { String column -> row[column] ? row[column] : null }
    def meta = [
        id              : row.id,
        perturbation_key: row.perturbation_key,
        control_label   : row.control_label,
        batch_key       : value('batch_key'),
        n_top_genes     : value('n_top_genes') as Integer,
        max_epochs      : value('max_epochs') as Integer,
        seed            : value('seed') as Integer,
        assign_guides   : row.guide_table ? true : false,
    ]
    return [ meta, file(row.h5ad, checkIfExists: true) ]
}
