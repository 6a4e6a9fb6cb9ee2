"""The image, for real: scripts/build-image.sh builds containers/Dockerfile (starting a Docker
engine and making the Debian base when needed), then `nextflow run . -profile test,docker`
runs every task in it, logging to an MLflow server that requires a password, and must give
the same outputs as the run without a container.

CI runs this (it is `slow`, not optional): where no engine can be started the tests fail.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "containers" / "Dockerfile").read_text()
SINGULARITY = (REPO / "containers" / "Singularity.def").read_text()
sys.path.insert(0, str(REPO / "python" / "tests"))
from tracking_fixtures import MlflowServer  # noqa: E402

pytestmark = pytest.mark.slow
SCREENS = ("simulated_0", "simulated_1")
USERNAME = "pc-admin"
# Where the run's MLflow store of a run without a tracking server sits (the docker run logs to one).
EMBEDDED_STORE = re.compile(r"^mlflow/")
TIMESTAMP = re.compile(r"_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d")


# -- the recipes as text: what the build cannot show ---------------------------------------

def test_both_recipes_start_from_one_debian_base_without_third_party_repositories():
    (default,) = re.findall(r"^ARG BASE_IMAGE=(\S+)", DOCKERFILE, flags=re.MULTILINE)
    assert re.findall(r"^FROM\s+(\S+)", DOCKERFILE, flags=re.MULTILINE) == ["${BASE_IMAGE}"]
    assert re.findall(r"^From:\s+(\S+)", SINGULARITY, flags=re.MULTILINE) == [default]
    assert default.startswith("debian:bookworm")
    for recipe in (DOCKERFILE, SINGULARITY):
        assert "ppa:" not in recipe and "add-apt-repository" not in recipe
        assert re.search(r"apt-get install -y --no-install-recommends python3\.11 python3\.11-venv procps bash", recipe)
        assert not re.search(r"apt-get install[^\n]*\b(gcc|libc6-dev|build-essential)\b", recipe)


def test_both_recipes_install_the_lock_file_ci_uses():
    assert "python/requirements.lock" in (REPO / "scripts" / "setup-python.sh").read_text()
    assert "COPY python/requirements.lock /opt/src/requirements.lock" in DOCKERFILE
    assert "-r /opt/src/requirements.lock" in DOCKERFILE and "--no-deps /opt/src/python" in DOCKERFILE
    assert "python/requirements.lock /opt/src/requirements.lock" in SINGULARITY
    assert "pip install --no-cache-dir -r /opt/src/requirements.lock" in SINGULARITY
    assert "pip install --no-cache-dir --no-deps /opt/src/python" in SINGULARITY


def test_the_lock_file_pins_every_requirement():
    lines = [line.split("#")[0].strip() for line in (REPO / "python" / "requirements.lock").read_text().splitlines()]
    requirements = [line for line in lines if line and not line.startswith("-")]
    assert requirements
    unpinned = [line for line in requirements if not re.match(r"^[A-Za-z0-9_.\-\[\],]+==[^=\s]+", line)]
    assert not unpinned, unpinned


def test_the_pipeline_image_carries_the_package_version():
    version = re.search(r'^version = "([^"]+)"', (REPO / "python" / "pyproject.toml").read_text(), re.MULTILINE)
    image = re.search(r"container\s*=\s*'([^']+)'", (REPO / "nextflow.config").read_text())
    assert version and image
    assert image.group(1).endswith(f":{version.group(1)}")
    assert f"pertcontrast:{version.group(1)}" in DOCKERFILE  # the documented build command


# -- the image, built ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def image() -> str:
    """scripts/build-image.sh, as a person runs it (a rebuild with cached layers takes seconds)."""
    completed = subprocess.run(["bash", str(REPO / "scripts" / "build-image.sh")], capture_output=True, text=True,
                               stdin=subprocess.DEVNULL, timeout=1800, check=False)
    assert completed.returncode == 0, completed.stderr[-5000:]
    return completed.stdout.strip().splitlines()[-1]


def in_image(image: str, script: str) -> str:
    completed = subprocess.run(["docker", "run", "--rm", image, "bash", "-c", script], capture_output=True,
                               text=True, stdin=subprocess.DEVNULL, timeout=600, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def locked_versions() -> dict[str, str]:
    pins = {}
    for line in (REPO / "python" / "requirements.lock").read_text().splitlines():
        name, _, pinned = line.split("#")[0].strip().partition("==")
        if pinned:
            pins[name.lower().replace("_", "-")] = pinned
    return pins


def test_the_image_holds_the_locked_versions_and_what_nextflow_needs(image):
    versions = dict(line.split(": ", 1) for line in in_image(image, "pertcontrast versions").splitlines())
    locked = locked_versions()
    for name in ("torch", "pyro-ppl", "scanpy", "anndata", "mlflow", "pandas", "numpy", "scikit-learn", "click"):
        assert versions[name] == locked[name], name
    assert versions["python"].startswith("3.11.")
    tools = in_image(image, "command -v ps bash python3 pertcontrast; env | sort").splitlines()
    assert [Path(tool).name for tool in tools[:2]] == ["ps", "bash"]
    assert tools[2:4] == ["/opt/pertcontrast/bin/python3", "/opt/pertcontrast/bin/pertcontrast"]
    assert "NVIDIA_VISIBLE_DEVICES=all" in tools and "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in tools


def test_the_image_keeps_no_build_leftovers(image):
    """No compiler, no pip cache or apt lists, no source copy and no CA bundle from the build."""
    left = in_image(image, "command -v gcc cc; find /var/lib/apt/lists /var/cache/apt /var/cache/pertcontrast-pip "
                           "/root/.cache /tmp /opt/src /run/secrets -mindepth 1 -not -path '/var/cache/apt/archives*' "
                           "2>/dev/null; true")
    assert not left.split(), left


# -- the pipeline in the image ---------------------------------------------------------------

@pytest.fixture(scope="module")
def password() -> str:
    return f"Pc-{secrets.token_hex(12)}"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory, password):
    """MLflow's own basic-auth server: every request needs USERNAME and the password."""
    root = tmp_path_factory.mktemp("mlflow_auth")
    config = root / "basic_auth.ini"
    config.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\nadmin_username = {USERNAME}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_PASSWORD": password,
           "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}
    server = MlflowServer(root / "server", extra_args=("--app-name", "basic-auth"), extra_env=env).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def docker_run(image, auth_server, password, nextflow, run_nextflow, pipeline_env, repo, tmp_path_factory):
    """-profile test,docker logging to the password-protected server. The password is a
    Nextflow secret (kept in a store outside the launch folder); the user name comes from
    the launching shell's environment (docker.envWhitelist)."""
    launch = tmp_path_factory.mktemp("test_docker")
    store = tmp_path_factory.mktemp("nextflow_secrets") / "store.json"
    env = dict(pipeline_env, NXF_SECRETS_FILE=str(store), MLFLOW_TRACKING_USERNAME=USERNAME)
    subprocess.run([nextflow, "secrets", "set", "MLFLOW_TRACKING_PASSWORD", password], env=env,
                   cwd=store.parent, capture_output=True, check=True, stdin=subprocess.DEVNULL)
    # The server listens on the launching machine's loopback: tasks share its network.
    (launch / "loopback.config").write_text("docker.runOptions = '-u $(id -u):$(id -g) --network host'\n")
    run = run_nextflow(["run", str(repo), "-profile", "test,docker", "--outdir", "results",
                        "--mlflow_uri", auth_server.uri, "-c", "loopback.config"], launch, env=env)
    print(f"nextflow run -profile test,docker: {run.seconds:.0f} s wall")
    assert run.returncode == 0, run.output[-5000:]
    return run


def test_every_task_ran_in_the_image_with_its_installed_package(docker_run, image):
    statuses = docker_run.statuses()
    assert statuses["TRAIN"] == ["COMPLETED"] * len(SCREENS)
    assert all(set(status) == {"COMPLETED"} for status in statuses.values()), statuses
    for folder in docker_run.work_dirs("TRAIN"):
        assert f" {image} " in (folder / ".command.run").read_text()
        log = (folder / ".command.log").read_text()
        assert "pertcontrast 0.1.0 (/opt/pertcontrast/lib/python3.11/site-packages/pertcontrast): " in log


def relative_files(outdir: Path) -> set[str]:
    names = {TIMESTAMP.sub("_TIMESTAMP", str(path.relative_to(outdir))) for path in outdir.rglob("*") if path.is_file()}
    return {name for name in names if not EMBEDDED_STORE.match(name)}


def assert_same_table(ours: pd.DataFrame, theirs: pd.DataFrame, where: str) -> None:
    assert list(ours.columns) == list(theirs.columns) and len(ours) == len(theirs), where
    for column in ours.columns:
        if "seconds" in str(column):
            continue  # wall-clock time
        if pd.api.types.is_float_dtype(ours[column]):
            np.testing.assert_allclose(ours[column], theirs[column], rtol=1e-3, atol=1e-4, equal_nan=True,
                                       err_msg=f"{where}: {column}")
        else:
            assert ours[column].astype(str).tolist() == theirs[column].astype(str).tolist(), f"{where}: {column}"


def test_outputs_match_the_run_without_a_container(docker_run, test_profile_run):
    """Same files (less the run's MLflow store, as this run logs to a server) and the same
    numbers: every CSV and parquet table, and the latents."""
    reference, outdir = test_profile_run.snapshot, docker_run.outdir
    assert relative_files(outdir) == relative_files(reference)
    tables = sorted(reference.rglob("*.csv")) + sorted(reference.rglob("*.parquet"))
    tables = [path for path in tables if not EMBEDDED_STORE.match(str(path.relative_to(reference)))]
    assert len(tables) > 10
    for path in tables:
        read = pd.read_csv if path.suffix == ".csv" else pd.read_parquet
        assert_same_table(read(outdir / path.relative_to(reference)), read(path), str(path.relative_to(reference)))
    for screen in SCREENS:
        name = f"{screen}/latents/{screen}.latents.h5ad"
        ours, theirs = ad.read_h5ad(outdir / name), ad.read_h5ad(reference / name)
        assert list(ours.obs_names) == list(theirs.obs_names)
        for key in ("X_salient", "X_background"):
            np.testing.assert_allclose(ours.obsm[key], theirs.obsm[key], rtol=1e-3, atol=1e-4, err_msg=key)


@contextmanager
def credentials(password: str):
    names = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(dict(zip(names, (USERNAME, password))))
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)


def test_tasks_in_the_image_log_to_a_server_that_requires_a_password(docker_run, auth_server, password):
    import urllib.error
    import urllib.request

    from mlflow.tracking import MlflowClient

    request = urllib.request.Request(f"{auth_server.uri}/api/2.0/mlflow/experiments/search?max_results=5")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401  # the server really asks for credentials
    with credentials(password):
        client = MlflowClient(auth_server.uri)
        (experiment,) = [e for e in client.search_experiments() if e.name == "pertcontrast"]
        runs = client.search_runs([experiment.experiment_id])
        assert sorted(run.data.tags["pertcontrast.screen_id"] for run in runs) == list(SCREENS)
        for run in runs:
            assert run.info.status == "FINISHED"
            assert len(run.data.params) > 20
            assert "report" in {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
            recorded = [*run.data.params.values(), *run.data.tags.values()]
            assert not [value for value in recorded if password in value]


def test_the_password_is_written_nowhere(docker_run, password):
    """Not in .command.sh/.run/.log, .nextflow.log, Nextflow's history, the published files
    (params, pipeline_info) nor the console output."""
    assert password not in docker_run.output
    written = [path for path in docker_run.launch_dir.rglob("*") if path.is_file() and password.encode() in path.read_bytes()]
    assert not written, written
    checked = {path.name for path in docker_run.launch_dir.rglob(".command.*")}
    assert {".command.sh", ".command.run", ".command.log"} <= checked
    assert list(docker_run.launch_dir.glob(".nextflow.log*")) and list((docker_run.outdir / "pipeline_info").iterdir())
