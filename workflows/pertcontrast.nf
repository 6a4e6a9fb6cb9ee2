/*
 * The analysis, every screen in parallel:
 *
 *   screens -> [ASSIGN_GUIDES] -> PREPROCESS -> TRAIN (or a registered model: --model) -> EXPORT
 *           -> RESPONDERS -> DE -> EFFECTS, GENERATE        (--skip_analysis, --skip_generate)
 *           -> REPORT per screen -> SUMMARY of the run       (--skip_report)
 *   TRAIN (+ REPORT) of every screen -> MLFLOW_STORE: one MLflow store for the run, unless
 *           the runs go to a tracking server (--mlflow_uri, MLFLOW_TRACKING_URI) or --mlflow false
 *
 * Each screen's meta holds its samplesheet row; a step receives only the fields it depends
 * on, so editing a training override in the sheet re-runs TRAIN and what follows but not
 * PREPROCESS (-resume). With --sweep, TRAIN runs once per setting and the model with the
 * best validation objective goes on. Screens with a guide table in the sheet go through
 * ASSIGN_GUIDES first (guide calls, one perturbation per cell, guide QC for the report).
 *
 * The counts live in the prepared file only: each later step writes what it adds (latents,
 * responder calls, ...) keyed by cell name, and the steps after it get the prepared file
 * and those outputs, joined here by screen id.
 */

include { INPUT_CHECK      } from '../subworkflows/local/input_check'
include { SIMULATE_SCREENS } from '../subworkflows/local/simulate_screens'
include { ASSIGN_GUIDES    } from '../modules/local/assign_guides'
include { PREPROCESS       } from '../modules/local/preprocess'
include { TRAIN            } from '../modules/local/train'
include { RESOLVE_MODEL    } from '../modules/local/resolve_model'
include { FETCH_MODEL      } from '../modules/local/fetch_model'
include { EXPORT           } from '../modules/local/export'
include { RESPONDERS       } from '../modules/local/responders'
include { DE               } from '../modules/local/de'
include { EFFECTS          } from '../modules/local/effects'
include { CALIBRATION      } from '../modules/local/calibration'
include { GENERATE         } from '../modules/local/generate'
include { REPORT           } from '../modules/local/report'
include { SUMMARY          } from '../modules/local/summary'
include { MLFLOW_STORE     } from '../modules/local/mlflow_store'
include { runStoreWanted   } from '../subworkflows/local/utils_pertcontrast_pipeline'

import groovy.json.JsonSlurper

workflow PERTCONTRAST {
    take:
    ch_samplesheet      // channel: path(samplesheet), or empty when screens are simulated
    ch_simulate_seeds   // channel: val(seed), one per simulated screen, or empty
    ch_checkpoint_root  // value channel: absolute folder for TRAIN checkpoints, or '' for none
    sweep_settings      // list of maps: one TRAIN per setting of every screen ([[:]]: no sweep)

    main:
    ch_versions = Channel.empty()

    // Only one of the two has input; the other runs no task.
    INPUT_CHECK(ch_samplesheet, file("${projectDir}/assets/schema_input.json", checkIfExists: true), workflow.launchDir.toString())
    SIMULATE_SCREENS(ch_simulate_seeds)
    ch_screens  = INPUT_CHECK.out.screens.mix(SIMULATE_SCREENS.out.screens)
    ch_versions = ch_versions.mix(INPUT_CHECK.out.versions, SIMULATE_SCREENS.out.versions.first())

    //
    // Guide calls first for the screens whose sheet row has a guide table
    //
    ch_split = ch_screens.branch { meta, counts ->
        guided: meta.assign_guides
        labelled: true
    }
    ASSIGN_GUIDES(byId(ch_split.guided).join(byId(INPUT_CHECK.out.guides))
        .map { id, meta, counts, meta2, guides, guide_table -> [ guidesMeta(meta), counts, guides, guide_table ] })
    ch_versions = ch_versions.mix(ASSIGN_GUIDES.out.versions.first())
    ch_counts = ch_split.labelled.mix(
        byId(ASSIGN_GUIDES.out.h5ad).join(byId(ch_split.guided)).map { id, meta2, assigned, meta, counts -> [ meta, assigned ] })
    ch_guide_qc = ch_split.labelled.map { meta, counts -> [ meta.id, [] ] }
        .mix(ASSIGN_GUIDES.out.qc.map { meta, qc -> [ meta.id, qc ] })

    PREPROCESS(ch_counts.map { meta, counts -> [ preprocessMeta(meta), counts ] })
    ch_versions = ch_versions.mix(PREPROCESS.out.versions.first())

    ch_prepared = byId(PREPROCESS.out.h5ad)
        .join(byId(ch_screens))
        .map { id, preprocessed, prepared, meta, counts -> [ meta, prepared ] }

    //
    // The model of each screen: trained here, or looked up (--model)
    //
    if (params.model) {
        if (params.model.toString().startsWith('models:/')) {
            RESOLVE_MODEL(params.model)
            ch_model_uri = RESOLVE_MODEL.out.pinned.first()
            ch_versions = ch_versions.mix(RESOLVE_MODEL.out.versions)
            FETCH_MODEL(ch_model_uri, params.model)
            ch_model_folder = FETCH_MODEL.out.model.first()
            ch_versions = ch_versions.mix(FETCH_MODEL.out.versions)
        } else {
            ch_model_uri = Channel.value('')
            ch_model_folder = Channel.value(file(params.model, checkIfExists: true))
        }
        ch_model = ch_prepared.combine(ch_model_folder).map { meta, prepared, model -> [ meta, model ] }
    } else {
        ch_model_uri = Channel.value('')
        ch_pipeline = Channel.value([ workflow.sessionId.toString(), workflow.commitId ?: workflow.manifest.version ?: '' ])
        ch_train = ch_prepared.combine(Channel.fromList(sweep_settings)).map { meta, prepared, setting ->
            [ setting ? meta + [ sweep: setting, sweep_id: sweepId(setting) ] : meta, prepared ]
        }
        TRAIN(ch_train, ch_checkpoint_root, ch_pipeline)
        ch_versions = ch_versions.mix(TRAIN.out.versions.first())
        ch_model = TRAIN.out.model
            .map { meta, model -> [ meta.id, meta.findAll { key, value -> !(key in ['sweep', 'sweep_id']) }, model ] }
            .groupTuple(size: sweep_settings.size())
            .map { id, metas, models -> [ metas[0], bestModel(models) ] }
    }

    ch_prepared_and_model = byId(ch_prepared).join(byId(ch_model)).map { id, meta, prepared, meta2, model -> [ meta, prepared, model ] }
    EXPORT(ch_prepared_and_model, ch_model_uri)
    ch_versions = ch_versions.mix(EXPORT.out.versions.first())
    // [ id, meta, prepared, latents ]: what every step after EXPORT reads
    ch_cells = byId(ch_prepared).join(byId(EXPORT.out.h5ad)).map { id, meta, prepared, meta2, latents -> [ id, meta, prepared, latents ] }

    //
    // Analysis: responders, model-based DE, effect table and clusters, generated expression
    //
    ch_responders = ch_model.map { meta, model -> [ meta.id, [] ] }
    ch_de = ch_responders
    ch_effects = ch_responders
    ch_calibration = ch_responders
    if (!params.skip_analysis) {
        RESPONDERS(ch_cells.join(byId(ch_model)).map { id, meta, prepared, latents, meta2, model -> [ meta, prepared, latents, model ] })
        ch_responders = RESPONDERS.out.h5ad.map { meta, responders -> [ meta.id, responders ] }
        DE(byId(ch_prepared).join(ch_responders).join(byId(ch_model))
            .map { id, meta, prepared, responders, meta2, model -> [ meta, prepared, responders, model ] })
        EFFECTS(ch_cells.join(ch_responders).join(DE.out.de.map { meta, de -> [ meta.id, de ] })
            .map { id, meta, prepared, latents, responders, de -> [ meta, prepared, latents, responders, de ] })
        ch_versions = ch_versions.mix(RESPONDERS.out.versions.first(), DE.out.versions.first(), EFFECTS.out.versions.first())
        ch_de = DE.out.de.map { meta, de -> [ meta.id, de ] }
        ch_effects = EFFECTS.out.effects.map { meta, effects -> [ meta.id, effects ] }
        // the pseudo-perturbation check: are this screen's calls calibrated?
        CALIBRATION(ch_cells.join(byId(ch_model)).map { id, meta, prepared, latents, meta2, model -> [ meta, prepared, latents, model ] })
        ch_versions = ch_versions.mix(CALIBRATION.out.versions.first())
        ch_calibration = CALIBRATION.out.calibration.map { meta, calibration -> [ meta.id, calibration ] }
    }
    if (!params.skip_analysis && !params.skip_generate) {
        GENERATE(ch_prepared_and_model)
        ch_versions = ch_versions.mix(GENERATE.out.versions.first())
    }

    //
    // Reports: one per screen, and a summary page of the run
    //
    ch_summary = Channel.empty()
    if (!params.skip_report) {
        ch_report_input = ch_cells
            .join(byId(ch_model))
            .join(ch_responders)
            .join(ch_de)
            .join(ch_effects)
            .join(ch_guide_qc)
            .join(ch_calibration)
            .map { id, meta, prepared, latents, meta2, model, responders, de, effects, guide_qc, calibration ->
                [ meta, prepared, latents, model, responders, de, effects, guide_qc, calibration ] }
        REPORT(ch_report_input)
        SUMMARY(REPORT.out.json.map { meta, json -> json }.collect())
        ch_versions = ch_versions.mix(REPORT.out.versions.first(), SUMMARY.out.versions)
        ch_summary = SUMMARY.out.summary
    }

    //
    // One MLflow store of the run's training runs (TRAIN only recorded them), with the reports
    //
    if (!params.model && runStoreWanted()) {
        ch_store_reports = params.skip_report ? Channel.value([ [], [] ]) : REPORT.out.report
            .map { meta, report -> [ meta.id, report ] }
            .toList()
            .map { pairs -> pairs.sort { pair -> pair[0] } }
            .map { pairs -> [ pairs.collect { pair -> pair[0] }, pairs.collect { pair -> pair[1] } ] }
        def published = file(params.outdir).toUri().toString().replaceAll('/+$', '')
        MLFLOW_STORE(TRAIN.out.model.map { meta, model -> model }.collect(), ch_store_reports,
            "${published}/{screen}/prepared/{screen}.prepared.h5ad")
        ch_versions = ch_versions.mix(MLFLOW_STORE.out.versions)
    }

    emit:
    prepared = ch_prepared        // channel: [ val(meta), path(prepared h5ad) ]
    model    = ch_model           // channel: [ val(meta), path(model folder) ]
    latents  = EXPORT.out.h5ad    // channel: [ val(meta), path(latents h5ad): what EXPORT adds, by cell ]
    summary  = ch_summary         // channel: path(summary folder)
    versions = ch_versions        // channel: path(versions.yml)
}

// [ meta, x... ] -> [ meta.id, meta, x... ]: joins by screen id, whatever else meta holds.
def byId(channel) {
    return channel.map { item -> [ item[0].id ] + item }
}

// The samplesheet fields ASSIGN_GUIDES depends on (the cache key of its tasks).
def guidesMeta(Map meta) {
    return meta.subMap(['id', 'perturbation_key'])
}

// The samplesheet fields PREPROCESS depends on (the cache key of its tasks).
def preprocessMeta(Map meta) {
    return meta.subMap(['id', 'perturbation_key', 'control_label', 'batch_key', 'n_top_genes'])
}

def sweepId(Map setting) {
    return setting.collect { name, value -> "${name}-${value}" }.join('_')
}

// The sweep's model with the lowest validation objective (what early stopping watched).
def bestModel(List models) {
    if (models.size() == 1) {
        return models[0]
    }
    return models.min { model ->
        def objective = new JsonSlurper().parseText(model.resolve('config.json').text).training?.best_validation_objective
        objective == null ? Double.POSITIVE_INFINITY : objective as double
    }
}
