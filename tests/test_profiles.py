"""Configuration: every profile resolves, parameters match nextflow_schema.json, modules keep
the house layout, and the pipeline's own checks (--help, parameter validation, -stub) work."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted((REPO / "modules" / "local").glob("*/main.nf"))

# MLflow's variables reach containers by name (docs/mlflow.md, Credentials)
MLFLOW_ENV = ("MLFLOW_TRACKING_URI,MLFLOW_TRACKING_USERNAME,MLFLOW_TRACKING_PASSWORD,MLFLOW_TRACKING_TOKEN,"
              "MLFLOW_TRACKING_INSECURE_TLS")
PROFILES = {
    "test": ["params.simulate_seeds = '0,1'", "params.max_epochs = 150", "process.resourceLimits"],
    "docker": ["docker.enabled = true", "singularity.enabled = false", f"docker.envWhitelist = '{MLFLOW_ENV}'"],
    "singularity": ["singularity.enabled = true", "singularity.autoMounts = true", "docker.enabled = false",
                    f"singularity.envWhitelist = '{MLFLOW_ENV}'"],
    "apptainer": ["apptainer.enabled = true", "apptainer.autoMounts = true", f"apptainer.envWhitelist = '{MLFLOW_ENV}'"],
    "gpu": ["params.gpu = true", "docker.runOptions = '-u $(id -u):$(id -g) --gpus all'", "singularity.runOptions = '--nv'"],
    "awsbatch": ["process.executor = 'awsbatch'", "aws.region = 'us-east-1'"],
    "google": ["process.executor = 'google-batch'", "google.location = 'us-central1'", "params.gpu_type = 'nvidia-tesla-t4'"],
    "slurm": ["process.executor = 'slurm'", "--gres=gpu:"],
    "test,docker": ["params.simulate_seeds = '0,1'", "docker.enabled = true"],
    "docker,gpu": ["docker.enabled = true", "--gpus all", "params.gpu = true"],
}


_CONFIGS: dict[str | None, str] = {}


def flat_config(nextflow: str, env: dict, profile: str | None) -> str:
    """`nextflow config -flat`, once per profile (each call starts a JVM)."""
    if profile not in _CONFIGS:
        args = [nextflow, "config", str(REPO), "-flat"] + (["-profile", profile] if profile else [])
        result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        _CONFIGS[profile] = result.stdout
    return _CONFIGS[profile]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profile_resolves(nextflow, pipeline_env, profile):
    config = flat_config(nextflow, pipeline_env, profile)
    for expected in PROFILES[profile]:
        assert expected in config, f"{expected!r} missing from -profile {profile}"
    # A profile must not replace base.config's process_gpu block (Nextflow merges no selectors).
    for directive in ("cpus", "memory", "time", "accelerator", "ext.use_gpu"):
        assert f"process.'withLabel:process_gpu'.{directive} = " in config, directive


def schema_properties() -> dict:
    schema = json.loads((REPO / "nextflow_schema.json").read_text())
    return {name: prop for group in schema["$defs"].values() for name, prop in group["properties"].items()}


def test_every_parameter_is_described_in_the_schema(nextflow, pipeline_env):
    config = flat_config(nextflow, pipeline_env, None)
    params = set(re.findall(r"^params\.(\w+) = ", config, flags=re.MULTILINE))
    properties = schema_properties()
    assert params == set(properties)
    for name, prop in properties.items():
        assert prop.get("description"), name


def test_schema_defaults_match_the_config(nextflow, pipeline_env):
    config = flat_config(nextflow, pipeline_env, None)
    for name, prop in schema_properties().items():
        if "default" in prop:
            value = prop["default"]
            literal = f"'{value}'" if isinstance(value, str) else str(value).lower()
            assert f"params.{name} = {literal}\n" in config, name


# pipeline parameter -> (command, option) it is passed to (conf/modules.config)
PASSED_TO_COMMANDS = {
    "de_fdr": ("de", "fdr"), "de_delta": ("de", "delta"), "de_samples": ("de", "n_samples"),
    "effects_permutations": ("effects", "n_permutations"), "calibration_groups": ("calibration", "n_groups"),
    "report_embedding": ("report", "embedding"), "report_max_points": ("report", "max_points"),
}


def test_pipeline_defaults_are_the_commands_defaults():
    """A parameter passed on to a command has that command's default: one source per default."""
    from pertcontrast.cli import main

    properties = schema_properties()
    for name, (command, option) in PASSED_TO_COMMANDS.items():
        defaults = {p.name: p.default for p in main.commands[command].params}
        assert properties[name]["default"] == defaults[option], (name, command, option)


def test_every_sweepable_setting_is_an_option_of_train():
    """The pipeline's --sweep names (sweepableSettings in the utils subworkflow) are
    passed to 'pertcontrast train' as --NAME-WITH-DASHES: each must be one of its options."""
    from pertcontrast.cli import main

    source = (REPO / "subworkflows/local/utils_pertcontrast_pipeline/main.nf").read_text()
    body = re.search(r"def sweepableSettings\(\) \{(.*?)\}", source, re.S)
    assert body, "sweepableSettings() not found"
    names = re.findall(r"'([a-z_]+)'", body.group(1))
    assert len(names) >= 10, names
    flags = {opt for param in main.commands["train"].params for opt in getattr(param, "opts", [])}
    missing = [name for name in names if "--" + name.replace("_", "-") not in flags]
    assert not missing, f"sweepable but not options of 'pertcontrast train': {missing}"


def test_the_container_image_is_named_in_one_place():
    config = (REPO / "nextflow.config").read_text()
    images = re.findall(r"ghcr\.io/[\w./-]+:[\w.-]+", config)
    assert len(images) == 1
    assert schema_properties()["container"]["default"] == images[0]
    for module in MODULES:
        assert 'container "${params.container}"' in module.read_text(), module


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.parent.name)
def test_module_follows_the_local_module_layout(module):
    text = module.read_text()
    assert re.search(r"^process [A-Z_]+ \{", text, flags=re.MULTILINE)
    assert re.search(r"^\s+tag ", text, flags=re.MULTILINE)
    assert re.search(r"^\s+label 'process_(single|low|medium|high|gpu)'", text, flags=re.MULTILINE)
    assert "task.ext.args" in text
    assert "stub:" in text
    assert "pertcontrast versions --process '${task.process}' > versions.yml" in text
    assert "emit: versions" in text
    # Steps that run once per pipeline run (not per screen) carry no meta map.
    if module.parent.name not in {"samplesheet_check", "resolve_model", "fetch_model", "summary", "mlflow_store"}:
        assert "tuple val(meta)" in text
    # Undeclared variables in a script block leak into the task's global scope.
    script = text.split("script:")[1].split('"""')[0]
    for line in script.strip().splitlines():
        assert line.strip().startswith("def ") or not re.match(r"^\s*\w+\s*=", line), line


TRACKING_MODULES = ("train", "export", "report", "resolve_model", "fetch_model")


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.parent.name)
def test_processes_that_reach_the_tracking_server_take_the_credentials_secrets(module):
    """Each MLflow credential set as a Nextflow secret; unset ones are left out (a missing
    secret would otherwise stop the run)."""
    declared = re.findall(r"^\s+secret\(secrets\.(\w+) \? '(\w+)' : null\)$", module.read_text(), flags=re.MULTILINE)
    if module.parent.name in TRACKING_MODULES:
        assert declared == [(name, name) for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                                                      "MLFLOW_TRACKING_TOKEN")]
    else:
        assert declared == []


def test_the_pipeline_passes_no_progress_switch():
    """Tasks report progress in their logs (pertcontrast.progress)."""
    assert not [path for path in MODULES if "--no-progress" in path.read_text()]


def test_train_requests_a_gpu_only_with_gpu():
    base = (REPO / "conf" / "base.config").read_text()
    assert "accelerator = { params.gpu ?" in base
    train = (REPO / "modules" / "local" / "train" / "main.nf").read_text()
    assert "label 'process_gpu'" in train
    assert "task.ext.use_gpu ? 'cuda' : 'cpu'" in train


def test_help_lists_every_parameter(run_nextflow, tmp_path):
    run = run_nextflow(["run", str(REPO), "--help"], tmp_path)
    assert run.returncode == 0, run.output
    for name in schema_properties():
        assert f"--{name}" in run.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-profile", "test", "--max_epochs", "many"], "--max_epochs many: must be a whole number"),
        (["-profile", "test", "--simulate_preset", "huge"], "must be one of tiny, standard, large"),
        ([], "--input: give a samplesheet"),
        (["-profile", "test", "--input", "sheet.csv"], "--input and --simulate_seeds exclude each other"),
    ],
)
def test_invalid_parameters_stop_the_run(run_nextflow, tmp_path, args, message):
    (tmp_path / "sheet.csv").write_text("id\n")
    run = run_nextflow(["run", str(REPO), *args], tmp_path)
    assert run.returncode != 0
    assert message in run.output, run.output[-3000:]
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())


@pytest.mark.slow
def test_stub_run_wires_every_step(run_nextflow, tmp_path):
    run = run_nextflow(["run", str(REPO), "-profile", "test", "-stub", "--outdir", "results"], tmp_path)
    assert run.returncode == 0, run.output[-5000:]
    per_screen = ("SIMULATE", "PREPROCESS", "TRAIN", "EXPORT", "RESPONDERS", "DE", "EFFECTS", "CALIBRATION",
                  "GENERATE", "REPORT")
    per_run = {"SUMMARY": ["COMPLETED"], "MLFLOW_STORE": ["COMPLETED"]}
    assert run.statuses() == {**{step: ["COMPLETED"] * 2 for step in per_screen}, **per_run}
    assert (run.outdir / "mlflow" / "mlflow.db").exists()
    for screen in ("simulated_0", "simulated_1"):
        assert (run.outdir / screen / "model" / "config.json").exists()
        assert (run.outdir / screen / "latents" / f"{screen}.latents.h5ad").exists()


@pytest.mark.slow
def test_gpu_flag_trains_on_cuda(run_nextflow, tmp_path):
    """--gpu runs TRAIN with --device cuda: it succeeds on a GPU host, and elsewhere fails
    with the CLI's message instead of silently training on the CPU."""
    import torch

    args = ["run", str(REPO), "-profile", "test", "--simulate_seeds", "0", "--gpu", "--outdir", "results"]
    run = run_nextflow(args, tmp_path)
    scripts = [path.read_text() for path in (tmp_path / "work").glob("*/*/.command.sh") if "pertcontrast train" in path.read_text()]
    assert scripts and all("--device cuda" in script for script in scripts)
    if torch.cuda.is_available():
        assert run.returncode == 0, run.output[-5000:]
    else:
        assert run.returncode != 0
        assert "--device cuda was asked for but no CUDA GPU is visible" in run.output
        assert run.statuses()["TRAIN"] == ["FAILED"]
