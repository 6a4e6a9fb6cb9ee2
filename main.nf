#!/usr/bin/env nextflow
/*
 * pertcontrast: separate perturbation effects from cell-line background in Perturb-seq
 * screens with a contrastive VAE.
 *
 *   nextflow run . -profile test --outdir results                 (simulated screens)
 *   nextflow run . --input samplesheet.csv --outdir results        (your screens)
 *
 * See README.md; parameters are described in nextflow_schema.json (--help lists them).
 */

include { PERTCONTRAST            } from './workflows/pertcontrast'
include { PIPELINE_INITIALISATION } from './subworkflows/local/utils_pertcontrast_pipeline'
include { PIPELINE_COMPLETION     } from './subworkflows/local/utils_pertcontrast_pipeline'
include { parseSweep              } from './subworkflows/local/utils_pertcontrast_pipeline'

workflow {
    main:
    PIPELINE_INITIALISATION()

    PERTCONTRAST(
        PIPELINE_INITIALISATION.out.samplesheet,
        PIPELINE_INITIALISATION.out.simulate_seeds,
        PIPELINE_INITIALISATION.out.checkpoint_root,
        parseSweep(params.sweep),
    )

    PIPELINE_COMPLETION(PERTCONTRAST.out.versions)
}
