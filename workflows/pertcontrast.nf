/*
 * The analysis: screens -> PREPROCESS -> TRAIN -> EXPORT, every screen in parallel.
 *
 * Each screen's meta holds its samplesheet row; a step receives only the fields it depends
 * on, so editing a training override in the sheet re-runs TRAIN and what follows but not
 * PREPROCESS (-resume). Later steps (analysis, report, summary) take the emitted channels,
 * all keyed by meta.
 */

include { INPUT_CHECK      } from '../subworkflows/local/input_check'
include { SIMULATE_SCREENS } from '../subworkflows/local/simulate_screens'
include { PREPROCESS       } from '../modules/local/preprocess'
include { TRAIN            } from '../modules/local/train'
include { EXPORT           } from '../modules/local/export'

workflow PERTCONTRAST {
    take:
    ch_samplesheet      // channel: path(samplesheet), or empty when screens are simulated
    ch_simulate_seeds   // channel: val(seed), one per simulated screen, or empty
    ch_checkpoint_root  // value channel: absolute folder for TRAIN checkpoints, or '' for none

    main:
    ch_versions = Channel.empty()

    // Only one of the two has input; the other runs no task.
    INPUT_CHECK(ch_samplesheet, file("${projectDir}/assets/schema_input.json", checkIfExists: true), workflow.launchDir.toString())
    SIMULATE_SCREENS(ch_simulate_seeds)
    ch_screens  = INPUT_CHECK.out.screens.mix(SIMULATE_SCREENS.out.screens)
    ch_versions = ch_versions.mix(INPUT_CHECK.out.versions, SIMULATE_SCREENS.out.versions.first())

    PREPROCESS(ch_screens.map { meta, counts -> [ preprocessMeta(meta), counts ] })
    ch_versions = ch_versions.mix(PREPROCESS.out.versions.first())

    ch_prepared = PREPROCESS.out.h5ad
        .map { meta, prepared -> [ meta.id, prepared ] }
        .join(ch_screens.map { meta, counts -> [ meta.id, meta ] })
        .map { id, prepared, meta -> [ meta, prepared ] }

    TRAIN(ch_prepared, ch_checkpoint_root)
    ch_versions = ch_versions.mix(TRAIN.out.versions.first())

    EXPORT(ch_prepared.join(TRAIN.out.model))
    ch_versions = ch_versions.mix(EXPORT.out.versions.first())

    emit:
    prepared = ch_prepared        // channel: [ val(meta), path(prepared h5ad) ]
    model    = TRAIN.out.model    // channel: [ val(meta), path(model folder) ]
    latents  = EXPORT.out.h5ad    // channel: [ val(meta), path(latents h5ad) ]
    versions = ch_versions        // channel: path(versions.yml)
}

// The samplesheet fields PREPROCESS depends on (the cache key of its tasks).
def preprocessMeta(Map meta) {
    return meta.subMap(['id', 'perturbation_key', 'control_label', 'batch_key', 'n_top_genes'])
}
