#!/usr/bin/env bash
# Debian packages the test suite and the serving benchmark use, installed only when missing:
#   postgresql  the PostgreSQL-backed MLflow tracking server test (tests/test_postgres.py)
#   wrk         the serving load generator (make bench-serving)
#   haproxy     the load balancer in front of two serving replicas (tests/test_replicas.py)
#   podman runc catatonit mmdebstrap  the serving image, built and run (make image, tests/test_image.py):
#               runc (crun 1.8 refuses hybrid cgroups), catatonit (kube play's pause container),
#               mmdebstrap (a Debian base image made here where no container registry is reachable)
# Needs root or sudo; otherwise prints the command to run and leaves the choice to you.
set -euo pipefail
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=(postgresql)
command -v wrk >/dev/null || missing+=(wrk)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
for tool in podman runc catatonit mmdebstrap; do
  command -v "$tool" >/dev/null || [ -x "/usr/libexec/podman/$tool" ] || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo -n"; else
  echo "missing Debian packages: ${missing[*]} (install: apt-get install -y ${missing[*]})" >&2
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
