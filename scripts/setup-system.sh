#!/usr/bin/env bash
# Debian/Ubuntu packages the pipeline needs, installed only when missing: Java 17 and Maven
# (Nextflow from Maven Central, scripts/setup-nextflow.sh) and procps (Nextflow reads task
# metrics with ps). With --browser also chromium and a font: the HTML report tests render pages
# headless (scripts/test.sh asks for them; the demo does not).
# Non-interactive; works as root (CI) or through sudo.
set -euo pipefail

browser=false
for arg in "$@"; do
    case "$arg" in
        --browser) browser=true ;;
        *) echo "setup-system: unknown option '$arg' (only --browser)" >&2; exit 2 ;;
    esac
done

missing=()
need() {
    local package="$1"
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
}

java_ok() {
    command -v java >/dev/null 2>&1 \
        && java -version 2>&1 | head -n1 | grep -Eq '"(1[7-9]|[2-9][0-9])[."]'
}

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "setup-system: not a Debian/Ubuntu system; install Java 17+, Maven and procps (and Chromium for the tests) yourself." >&2
    exit 0
fi

java_ok || need openjdk-17-jre-headless
command -v nextflow >/dev/null 2>&1 || command -v mvn >/dev/null 2>&1 || need maven
command -v ps >/dev/null 2>&1 || need procps
if [[ "$browser" == true ]]; then
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need chromium
    # Headless Chromium renders text only with a font installed.
    need fonts-liberation
fi

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "setup-system: system packages present" >&2
    exit 0
fi

sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "setup-system: missing ${missing[*]}; run as root or install them." >&2
        exit 1
    fi
    sudo=(sudo -n)
fi

echo "setup-system: installing ${missing[*]}" >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" </dev/null >&2
