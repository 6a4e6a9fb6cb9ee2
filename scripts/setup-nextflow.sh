#!/usr/bin/env bash
# Make a working `nextflow` available without internet access.
#
# The official launcher downloads Nextflow on first use, which fails offline. When no
# `nextflow` is on PATH, resolve the pinned io.nextflow:nextflow jars from Maven Central
# into .tools/nextflow/lib and write .tools/nextflow/nextflow, a launcher that runs them
# with the JVM flags of the official launcher and NXF_OFFLINE=true.
#
# Prints the path of the nextflow to use as the last line of stdout.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=versions.env
source "$root/scripts/versions.env"
tool_dir="$root/.tools/nextflow"
launcher="$tool_dir/nextflow"

if command -v nextflow >/dev/null 2>&1; then
    command -v nextflow
    exit 0
fi

if [[ -x "$launcher" && -f "$tool_dir/lib/nextflow-$NEXTFLOW_VERSION.jar" ]]; then
    echo "$launcher"
    exit 0
fi

for tool in java mvn; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "setup-nextflow: '$tool' is not installed; run scripts/setup-system.sh (Java 17 and Maven)." >&2
        exit 1
    fi
done

echo "setup-nextflow: resolving io.nextflow:nextflow:$NEXTFLOW_VERSION from Maven Central into $tool_dir" >&2
rm -rf "$tool_dir/lib"
mkdir -p "$tool_dir/lib" "$tool_dir/home"
cat > "$tool_dir/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.pertcontrast</groupId>
  <artifactId>nextflow-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>io.nextflow</groupId>
      <artifactId>nextflow</artifactId>
      <version>$NEXTFLOW_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
mvn --batch-mode --quiet --no-transfer-progress -Dstyle.color=never -f "$tool_dir/pom.xml" \
    dependency:copy-dependencies -DoutputDirectory="$tool_dir/lib" -DincludeScope=runtime >&2

# Written to a temporary name and moved, so an interrupted set-up never leaves a launcher
# that points at a half-filled lib/.
cat > "$launcher.tmp" <<'LAUNCHER'
#!/usr/bin/env bash
# Nextflow from Maven Central jars, written by scripts/setup-nextflow.sh. Offline by
# default (set NXF_OFFLINE=false to let Nextflow download plugins, e.g. nf-amazon).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export NXF_OFFLINE="${NXF_OFFLINE:-true}"
export NXF_HOME="${NXF_HOME:-$here/home}"
java_cmd="${JAVA_CMD:-java}"
if [[ -n "${JAVA_HOME:-}" && -z "${JAVA_CMD:-}" ]]; then
    java_cmd="$JAVA_HOME/bin/java"
fi
# The official launcher's flags for Java 17+: Nextflow and Groovy reach into these modules.
opens=()
for module in java.lang java.io java.nio java.net java.util java.util.concurrent \
    java.util.concurrent.locks java.util.concurrent.atomic sun.nio.ch sun.nio.fs \
    sun.net.www.protocol.http sun.net.www.protocol.https sun.net.www.protocol.ftp \
    sun.net.www.protocol.file jdk.internal.misc jdk.internal.vm java.util.regex; do
    opens+=("--add-opens=java.base/$module=ALL-UNNAMED")
done
# shellcheck disable=SC2086  # NXF_OPTS is a list of JVM options, as for the official launcher
exec "$java_cmd" -XX:+IgnoreUnrecognizedVMOptions "${opens[@]}" ${NXF_OPTS:-} \
    -cp "$here/lib/*" nextflow.cli.Launcher "$@"
LAUNCHER
chmod +x "$launcher.tmp"
mv "$launcher.tmp" "$launcher"
"$launcher" -version >&2
echo "$launcher"
