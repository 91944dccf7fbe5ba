#!/usr/bin/env bash
# Installs Debian's nginx for the side-by-side benchmark (bench/), if it is
# missing. The benchmark starts its own nginx processes with their own
# configuration; the system service is not used.
set -euo pipefail
if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then
  exit 0
fi
echo "installing nginx (Debian package) for the side-by-side benchmark"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
$SUDO apt-get install -y nginx >/dev/null || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y nginx >/dev/null; }
