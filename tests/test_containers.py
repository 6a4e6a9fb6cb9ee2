"""The container recipes, checked as text (no Docker engine on the CI machines): both
build from the same pinned CUDA base, install the same lock file as CI, and the image
named by the pipeline carries the package version."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "containers" / "Dockerfile").read_text()
SINGULARITY = (REPO / "containers" / "Singularity.def").read_text()


def base_images():
    docker = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, flags=re.MULTILINE)
    singularity = re.findall(r"^From:\s+(\S+)", SINGULARITY, flags=re.MULTILINE)
    return docker, singularity


def test_both_recipes_build_from_one_pinned_cuda_base():
    docker, singularity = base_images()
    assert len(docker) == 1 and docker == singularity
    name, _, tag = docker[0].partition(":")
    assert name == "nvidia/cuda"
    assert re.match(r"^\d+\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+$", tag), tag


def test_both_recipes_install_the_lock_file_ci_uses():
    assert "python/requirements.lock" in (REPO / "scripts" / "setup-python.sh").read_text()
    assert "COPY python/requirements.lock" in DOCKERFILE and "pip install -r /opt/src/requirements.lock" in DOCKERFILE
    assert "python/requirements.lock /opt/src/requirements.lock" in SINGULARITY
    assert "pip install --no-cache-dir -r /opt/src/requirements.lock" in SINGULARITY
    # the package itself goes in without resolving anything beyond the lock
    assert "pip install --no-deps /opt/src/python" in DOCKERFILE
    assert "--no-deps /opt/src/python" in SINGULARITY


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


def test_images_can_build_the_c_kernel_and_the_package_ships_its_source(tmp_path):
    """CPU tasks build the count-likelihood kernel on first use: the images carry a C
    compiler, and the installed (non-editable) package carries the kernel's source."""
    import shutil
    import subprocess
    import sys
    import zipfile

    for recipe in (DOCKERFILE, SINGULARITY):
        assert re.search(r"apt-get install[^\n]*\bgcc\b[^\n]*\blibc6-dev\b", recipe)
    source = tmp_path / "python"  # a copy: the build writes build/ next to the sources
    shutil.copytree(REPO / "python", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(source)], check=True)
    (wheel,) = tmp_path.glob("pertcontrast-*.whl")
    assert "pertcontrast/module/native/count_likelihood.c" in zipfile.ZipFile(wheel).namelist()
