/*
 * Start and end of a run: parameter checks against nextflow_schema.json, --help, the
 * input channels, and at the end the collated software_versions.yml and a one-line outcome.
 */

import groovy.json.JsonSlurper
import org.yaml.snakeyaml.Yaml

workflow PIPELINE_INITIALISATION {
    main:
    def schema = new JsonSlurper().parse(file("${projectDir}/nextflow_schema.json"))
    if (params.help) {
        log.info(paramsHelp(schema))
        System.exit(0)
    }
    if (params.validate_params) {
        validateParameters(schema)
    }
    log.info(paramsSummary(schema))

    // Exactly one of the two is non-empty (validateParameters).
    ch_samplesheet = params.input ? Channel.fromPath(params.input, checkIfExists: true) : Channel.empty()
    ch_seeds = params.simulate_seeds != null ? Channel.fromList(parseSeeds(params.simulate_seeds)) : Channel.empty()

    emit:
    samplesheet     = ch_samplesheet                  // channel: path(samplesheet), or empty
    simulate_seeds  = ch_seeds                        // channel: val(seed), or empty
    checkpoint_root = Channel.value(checkpointRoot()) // value channel: string
}

workflow PIPELINE_COMPLETION {
    take:
    ch_versions  // channel: path(versions.yml), from every process

    main:
    softwareVersionsToYAML(ch_versions)
        .collectFile(storeDir: "${params.outdir}/pipeline_info", name: 'software_versions.yml', sort: true, newLine: true)

    workflow.onComplete {
        completionSummary()
    }
}

// A function, not inline: inside a workflow body `workflow` is not the run's metadata.
def completionSummary() {
    if (workflow.success) {
        def outdir = params.outdir.toString().replaceAll('/+$', '')
        def lines = ["-[pertcontrast] completed: outputs in ${outdir}/ (pipeline_info/ has the execution reports)"]
        if (!params.skip_report) {
            lines << "  open the run's summary: ${outdir}/summary/index.html (a report per screen: ${outdir}/<id>/report/)"
        }
        if (!params.model && runStoreWanted()) {
            def store = file("${outdir}/mlflow")
            lines << (store.toUri().getScheme() == 'file'
                ? "  MLflow runs: mlflow ui --backend-store-uri sqlite:///${store.toAbsolutePath()}/mlflow.db --artifacts-destination ${store.toAbsolutePath()}/artifacts"
                : "  MLflow runs: ${outdir}/mlflow/ (copy it to a local folder to browse it, see docs/mlflow.md)")
        }
        log.info(lines.join('\n'))
    } else {
        log.error("-[pertcontrast] failed; see the error above and ${params.outdir}/pipeline_info/")
    }
}

// Training runs go to no tracking server: TRAIN only records them (--mlflow-record-only,
// chosen by the same test in conf/modules.config) and MLFLOW_STORE puts them into one store,
// <outdir>/mlflow (docs/mlflow.md).
def runStoreWanted() {
    return params.mlflow && !params.mlflow_uri && !System.getenv('MLFLOW_TRACKING_URI')
}

/*
 * Parameters
 */

def schemaProperties(Map schema) {
    return schema['$defs'].values().collectEntries { group -> group.properties ?: [:] }
}

// Nextflow adds camelCase and kebab-case twins of --snake_case parameters given on the command line.
def snakeCase(String name) {
    return name.replaceAll(/([A-Z])/, '_$1').replace('-', '_').toLowerCase()
}

def validateParameters(Map schema) {
    def properties = schemaProperties(schema)
    def errors = []
    params.each { name, value ->
        def key = snakeCase(name)
        if (!properties.containsKey(key)) {
            if (key == name) {
                log.warn("Unknown parameter --${name}: not in nextflow_schema.json (ignored; see --help)")
            }
            return
        }
        if (value == null || key != name) {
            return
        }
        def problem = parameterProblem(properties[key], value)
        if (problem) {
            errors << "--${name} ${value}: ${problem}"
        }
    }
    if (params.input == null && params.simulate_seeds == null) {
        errors << '--input: give a samplesheet of screens (or use -profile test for simulated screens)'
    }
    if (params.input != null && params.simulate_seeds != null) {
        errors << '--input and --simulate_seeds exclude each other: run either your screens or simulated ones'
    }
    if (params.mlflow_uri && params.mlflow_uri.toString() ==~ /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\/]*@.*/) {
        errors << '--mlflow_uri must not hold credentials (they would be written into task scripts): set MLFLOW_TRACKING_USERNAME/PASSWORD in the environment instead'
    }
    if (params.model && (params.register_model || params.sweep)) {
        errors << '--model uses a registered model instead of training: --register_model and --sweep need training'
    }
    if (params.model && params.model.toString().startsWith('models:/') && !params.mlflow_uri && !System.getenv('MLFLOW_TRACKING_URI')) {
        errors << '--model models:/... needs the tracking server: give --mlflow_uri (or set MLFLOW_TRACKING_URI)'
    }
    try {
        parseSweep(params.sweep)
    } catch (IllegalArgumentException problem) {
        errors << "--sweep ${params.sweep}: ${problem.message}"
    }
    if (errors) {
        error("Invalid parameters:\n  " + errors.join('\n  '))
    }
}

// Training settings a sweep may vary, as 'pertcontrast train' names them (with _ for -).
def sweepableSettings() {
    return ['seed', 'learning_rate', 'batch_size', 'n_background', 'n_salient', 'n_hidden', 'n_layers',
            'dropout', 'wasserstein_weight', 'classification_weight', 'independence_weight', 'nuisance_weight', 'control_fraction',
            'likelihood', 'max_epochs']
}

/*
 * --sweep 'learning_rate=0.001,0.002;seed=0,1' -> every combination, as a list of maps;
 * [[:]] (one run with no overrides) without a sweep.
 */
def parseSweep(sweep) {
    if (!sweep) {
        return [[:]]
    }
    def settings = [[:]]
    sweep.toString().tokenize(';').each { part ->
        def pieces = part.tokenize('=')
        if (pieces.size() != 2) {
            throw new IllegalArgumentException("'${part}' is not name=value1,value2")
        }
        def name = pieces[0].trim()
        if (!(name in sweepableSettings())) {
            throw new IllegalArgumentException("'${name}' cannot be swept; one of ${sweepableSettings().join(', ')}")
        }
        def values = pieces[1].tokenize(',').collect { value -> value.trim() }.findAll { value -> value }
        if (!values || values.any { value -> !(value ==~ /[A-Za-z0-9_.+-]+/) }) {
            throw new IllegalArgumentException("'${part}' needs plain values (letters, digits, . + - _)")
        }
        settings = settings.collectMany { setting -> values.collect { value -> setting + [(name): value] } }
    }
    return settings
}

def parameterProblem(Map property, value) {
    def type = property.type
    if (type == 'integer' && !(value instanceof Integer || value instanceof Long)) {
        return 'must be a whole number'
    }
    if (type == 'number' && !(value instanceof Number)) {
        return 'must be a number'
    }
    if (type == 'boolean' && !(value instanceof Boolean)) {
        return 'must be true or false'
    }
    if (property.minimum != null && value instanceof Number && value < property.minimum) {
        return "must be at least ${property.minimum}"
    }
    if (property.enum && !(value in property.enum)) {
        return "must be one of ${property.enum.join(', ')}"
    }
    if (property.pattern && type == 'string' && !(value.toString() ==~ property.pattern)) {
        return property.errorMessage ?: "must match ${property.pattern}"
    }
    return null
}

def parseSeeds(seeds) {
    return seeds.toString().tokenize(',').collect { seed -> seed.trim() as Integer }
}

def paramsHelp(Map schema) {
    def lines = ["${workflow.manifest.name} ${workflow.manifest.version}: ${workflow.manifest.description}", '',
                 'Usage: nextflow run . --input samplesheet.csv --outdir results [-profile docker|singularity|apptainer|gpu|awsbatch|google|slurm|test]']
    schema['$defs'].each { groupName, group ->
        lines << '' << "${group.title}:"
        group.properties.each { name, property ->
            def defaultText = property.default != null ? " [default: ${property.default}]" : ''
            lines << "  --${name.padRight(20)} ${property.description}${defaultText}"
        }
    }
    return lines.join('\n')
}

def paramsSummary(Map schema) {
    def properties = schemaProperties(schema)
    def lines = ["${workflow.manifest.name} ${workflow.manifest.version} (Nextflow ${nextflow.version})",
                 "  run name           : ${workflow.runName}",
                 "  profile            : ${workflow.profile}"]
    properties.keySet().each { name ->
        if (params[name] != null && params[name] != false && name != 'help') {
            lines << "  ${name.padRight(19)}: ${params[name]}"
        }
    }
    return lines.join('\n')
}

// TRAIN checkpoints need a folder every task can write and that outlives the work folder.
// Object stores (s3://, gs://) are not one: there, a retried TRAIN starts over.
def checkpointRoot() {
    def root = file(params.checkpoint_dir ?: "${params.outdir}/checkpoints")
    if (root.toUri().getScheme() != 'file') {
        log.warn("TRAIN checkpoints need a local or shared folder; ${root.toUriString()} is not (set --checkpoint_dir)")
        return ''
    }
    return root.toAbsolutePath().normalize().toString()
}

/*
 * Software versions: every process writes versions.yml; one file lists them all.
 */

def processVersionsFromYAML(String text) {
    def yaml = new Yaml()
    def versions = yaml.load(text).collectEntries { process, tools -> [ process.tokenize(':')[-1], tools ] }
    return yaml.dumpAsMap(versions).trim()
}

def workflowVersionToYAML() {
    return """
    Workflow:
        ${workflow.manifest.name}: ${workflow.manifest.version}
        Nextflow: ${nextflow.version}
    """.stripIndent().trim()
}

def softwareVersionsToYAML(ch_versions) {
    return ch_versions
        .map { versions -> processVersionsFromYAML(versions.text) }
        .unique()
        .mix(Channel.of(workflowVersionToYAML()))
}
