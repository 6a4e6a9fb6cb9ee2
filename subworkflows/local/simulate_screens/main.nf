/*
 * Simulated screens (the test profile): one tiny screen per seed, described like a
 * samplesheet row so the rest of the pipeline cannot tell them from real data.
 */

include { SIMULATE } from '../../../modules/local/simulate'

workflow SIMULATE_SCREENS {
    take:
    ch_seeds  // channel: val(seed)

    main:
    SIMULATE(ch_seeds.map { seed -> [ simulatedMeta(seed), seed ] })

    emit:
    screens  = SIMULATE.out.h5ad       // channel: [ val(meta), path(counts) ]
    versions = SIMULATE.out.versions   // channel: path(versions.yml)
}

def simulatedMeta(seed) {
    return [
        id              : "simulated_${seed}".toString(),
        perturbation_key: 'perturbation',
        control_label   : 'control',
        batch_key       : 'batch',
        n_top_genes     : null,
        max_epochs      : null,
        seed            : null,
    ]
}
