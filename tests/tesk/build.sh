#!/usr/bin/env bash
# Builds the real TESK for tests/tests/tesk.rs from the pinned source snapshots of the shared peers
# directory (TESK is published on no registry this project can reach): the Java TES API
# `tesk-api` (751d482, the code behind the chart's tesk-api:1.1.0 image) with Maven, its
# dependencies from Maven Central, into OUT_DIR/tesk-api.jar; and the taskmaster `tesk-core`
# (a50995a, the first commit whose Job-status check works on Kubernetes >= 1.37) unpacked into
# OUT_DIR/src/tesk-core, which `cargo xtask images` packs into the tesk-taskmaster image.
#
# Two changes are made, to the build copy's pom.xml only (TESK's image runs Java 8/11, this machine
# has JDK 17): tesk-api pins Lombok 1.18.12, whose annotation processor cannot run on JDK 17
# (IllegalAccessError on com.sun.tools.javac.processing), so the copy asks for Lombok 1.18.30; and
# the copy adds the standalone Nashorn JavaScript engine (see below). No TESK source file changes.
#
# Usage: build.sh PEERS_TESK_DIR OUT_DIR. Idempotent: OUT_DIR/STAMP records the snapshots'
# sha-256 and the JDK/Maven versions; when it matches, nothing is rebuilt. Serialised with
# flock(1) on OUT_DIR/.lock. Outputs are written under temporary names and renamed.
set -euo pipefail

peers="$1"
out="$2"
api="$peers/tesk-api-751d482.tar.gz"
core="$peers/tesk-core-a50995a.tar.gz"
for f in "$api" "$core"; do
    if [[ ! -f "$f" ]]; then
        echo "TESK source snapshot $f is missing (see ../shared/peers/README.md)" >&2
        exit 1
    fi
done
for tool in java mvn; do
    if ! command -v "$tool" >/dev/null; then
        echo "$tool is missing: install Debian's openjdk-17-jdk-headless and maven" >&2
        exit 1
    fi
done
# sed -n 1p, not head: head may exit first, and pipefail would then end the script on SIGPIPE.
jdk="$(java -version 2>&1 | sed -n 1p)"
maven="$(mvn -B -v 2>/dev/null | sed -n '1{s/\x1b\[[0-9;]*m//g;p}')"
stamp="tesk $(sha256sum "$api" "$core" | cut -d' ' -f1 | tr '\n' ' ')lombok=1.18.30 nashorn=15.4 ${jdk} ${maven}"

mkdir -p "$out"
exec 9>"$out/.lock"
flock 9

if [[ -f "$out/STAMP" && "$(cat "$out/STAMP")" == "$stamp" ]] \
    && [[ -f "$out/tesk-api.jar" && -d "$out/src/tesk-core/src/tesk_core" ]]; then
    echo "TESK up to date in $out"
    exit 0
fi
rm -f "$out/STAMP"
rm -rf "$out/src" "$out/.src.part"
mkdir -p "$out/.src.part"
tar -xzf "$api" -C "$out/.src.part"
tar -xzf "$core" -C "$out/.src.part"
pom="$out/.src.part/tesk-api/pom.xml"
grep -q '<version>1.18.12</version>' "$pom"
sed -i 's|<version>1.18.12</version>|<version>1.18.30</version>|' "$pom"
# tesk-api validates tasks with Hibernate Validator's @ScriptAssert in JavaScript; JDK 15 removed
# Nashorn, so the copy also depends on the standalone Nashorn (else POST /tasks answers 500
# "HV000170: No JSR-223 scripting engine could be bootstrapped for language javascript").
sed -i '0,/<dependencies>/s|<dependencies>|<dependencies><dependency><groupId>org.openjdk.nashorn</groupId><artifactId>nashorn-core</artifactId><version>15.4</version></dependency>|' "$pom"
grep -q nashorn-core "$pom"
mv "$out/.src.part" "$out/src"
echo "building tesk-api into $out/tesk-api.jar"
(cd "$out/src/tesk-api" && mvn -B -q -Dmaven.repo.local="$out/m2" -DskipTests package)
cp "$out/src/tesk-api/target/tesk-0.0.1-SNAPSHOT.jar" "$out/.tesk-api.jar.part"
mv -f "$out/.tesk-api.jar.part" "$out/tesk-api.jar"
rm -rf "$out/src/tesk-api/target"
echo "$stamp" > "$out/.STAMP.part"
mv -f "$out/.STAMP.part" "$out/STAMP"
echo "TESK built in $out ($stamp)"
