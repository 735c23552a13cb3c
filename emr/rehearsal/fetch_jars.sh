#!/usr/bin/env bash
# Jars the EMR rehearsal needs, from Maven Central, once per machine (cached under
# ${FRUITS_JARS_DIR:-~/.cache/fruits/jars}; Maven's own cache is ~/.m2):
#   s3a/   hadoop-aws + AWS SDK bundle: Spark's S3A connector for the local pyspark (about 0.5 GB)
#   s3a-emr/  the same for EMR's Spark 3.5.6 (Hadoop 3.3.4, AWS SDK v1; about 0.3 GB)
#   yarn/  Hadoop's CLI MiniCluster with its dependencies: a YARN ResourceManager + NodeManager
#   sparkmeasure/  sparkMeasure for Spark 3.5 (Scala 2.12): stage metrics of the featurization
# Usage: fetch_jars.sh [s3a] [s3a-emr] [yarn] [sparkmeasure]    (all when no argument); prints each folder.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
JARS="${FRUITS_JARS_DIR:-$HOME/.cache/fruits/jars}"
sets=("$@")
[[ ${#sets[@]} -eq 0 ]] && sets=(s3a s3a-emr yarn sparkmeasure)
for set in "${sets[@]}"; do
  case "$set" in
    # exactly the named jars: Spark already bundles the Hadoop client and Jackson they need
    s3a|s3a-emr|sparkmeasure) extra=(-DexcludeTransitive=true) ;;
    yarn) extra=() ;;
    *) echo "fetch_jars: unknown set: $set (s3a, s3a-emr, yarn or sparkmeasure)" >&2; exit 2 ;;
  esac
  target="$JARS/$set"
  # a finished fetch leaves .complete, keyed by the pom that made it
  stamp="$target/.complete-$(sha256sum "$HERE/pom-$set.xml" | cut -c1-16)"
  if [[ ! -f "$stamp" ]]; then
    rm -rf "$target"
    mvn -q -B -f "$HERE/pom-$set.xml" dependency:copy-dependencies \
      -DoutputDirectory="$target" "${extra[@]}" >&2
    touch "$stamp"
  fi
  echo "$target"
done
