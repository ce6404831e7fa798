#!/usr/bin/env bash
# Local stand-ins for the base images that deploy/Dockerfile and docker-compose.yml name, for machines
# that cannot reach Docker Hub (this project's CI): Debian bookworm root filesystems made with
# debootstrap and imported under the very same tags, so both files run unchanged.
#
#   sudo deploy/standin-images.sh            # needs root, debootstrap and a running Docker engine
#   sudo deploy/standin-images.sh --rebuild  # rebuild stand-ins built earlier (never pulled images)
#
# A tag that is already present, or that `docker pull` can fetch, is left alone; real users never
# need this. Like Debian's slim images, the stand-ins leave out documentation, man pages and locales. The python stand-in carries the host's CA bundle (PIP_CERT, SSL_CERT_FILE,
# NODE_EXTRA_CA_CERTS point at it) because package downloads here go through an intercepting proxy.
# The package-installed root filesystems are cached as tarballs in $FRAMECAST_STANDIN_CACHE
# (default ~/.cache/framecast/standin), so rebuilding after /var/lib/docker is wiped takes seconds.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"  # debootstrap, chroot

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${FRAMECAST_STANDIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/framecast/standin}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
version=2  # of the stand-ins' recipe: names the cached tarballs, so a changed recipe is not served stale
ca_bundle=${FRAMECAST_STANDIN_CA:-/etc/ssl/certs/ca-certificates.crt}
# Debian's docker.io client matches its engine; a newer client elsewhere on PATH may insist on BuildKit.
docker=${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
export DOCKER_BUILDKIT=0

python_tag=$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$repo/deploy/Dockerfile")
redis_tag=$(grep -m1 -oE 'image: *redis:[^ ]+' "$repo/docker-compose.yml" | sed 's/image: *//')
if [ -z "$python_tag" ] || [ -z "$redis_tag" ]; then
  echo "standin-images: cannot find the base image tags in deploy/Dockerfile / docker-compose.yml" >&2
  exit 1
fi

log() { echo "standin-images: $*" >&2; }

rebuild=false
case "${1:-}" in
  --rebuild) rebuild=true ;;
  "") ;;
  *) echo "usage: $0 [--rebuild]" >&2; exit 2 ;;
esac

# True when the tag is there or can be pulled: then no stand-in is wanted.
available() {
  if $rebuild && [ "$("$docker" image inspect -f '{{index .Config.Labels "org.framecast.standin"}}' "$1" \
                      2>/dev/null)" = 1 ]; then
    "$docker" image rm "$1" >/dev/null
    return 1
  fi
  "$docker" image inspect "$1" >/dev/null 2>&1 && return 0
  timeout 120 "$docker" pull -q "$1" >/dev/null 2>&1
}

work=""
mounted=()
cleanup() {
  local m
  for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done
  if [ -n "$work" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

# base_rootfs DIR: a minimal bookworm (debootstrap once per run, copied for each image).
base_rootfs() {
  if [ ! -d "$work/base" ]; then
    log "debootstrap $suite from $mirror"
    debootstrap --variant=minbase "$suite" "$work/base" "$mirror" >"$work/debootstrap.log" 2>&1 \
      || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    # What debian:bookworm-slim leaves out, now and in every package installed later.
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
      'path-exclude /usr/share/man/*' 'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/info/*' \
      'path-exclude /usr/share/locale/*' 'path-exclude /usr/share/lintian/*' \
      >"$work/base/etc/dpkg/dpkg.cfg.d/docker-slim"
    find "$work/base/usr/share/doc" -type f ! -name copyright -delete
    rm -rf "$work/base/usr/share/"{man,groff,info,locale,lintian}/*
  fi
  cp -a "$work/base" "$1"
}

tarball() { echo "$cache/$1-$suite-v$version.tar"; }

# rootfs_tarball NAME PACKAGE...: $(tarball NAME), a bookworm rootfs with the packages installed.
rootfs_tarball() {
  local name=$1 root; shift
  if [ -s "$(tarball "$name")" ]; then
    log "using the cached $(tarball "$name")"
    return
  fi
  root="$work/$name"
  base_rootfs "$root"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  # No service may start inside the chroot (redis-server's postinst would try).
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d" && chmod +x "$root/usr/sbin/policy-rc.d"
  mount -t proc proc "$root/proc" && mounted+=("$root/proc")
  log "installing $* into the $name rootfs"
  chroot "$root" env DEBIAN_FRONTEND=noninteractive sh -c \
    "apt-get update -qq && apt-get install -y -qq --no-install-recommends $* && apt-get clean" \
    >"$work/$name-install.log" 2>&1 || { tail -20 "$work/$name-install.log" >&2; exit 1; }
  umount "$root/proc"
  rm -rf "$root/var/lib/apt/lists/"* "$root/usr/sbin/policy-rc.d"
  : >"$root/etc/resolv.conf"
  mkdir -p "$cache"
  tar --numeric-owner -C "$root" -cf "$(tarball "$name").part" .
  mv "$(tarball "$name").part" "$(tarball "$name")"
  rm -rf "$root"
}

# finish TAG NAME: import $(tarball NAME) and build TAG on it from the Dockerfile on stdin, with
# $work/ctx-NAME as the build context.
finish() {
  local tag=$1 name=$2
  "$docker" import "$(tarball "$name")" "framecast-standin/$name-rootfs:$suite" >/dev/null
  "$docker" build -q -t "$tag" --label org.framecast.standin=1 -f - "$work/ctx-$name" >/dev/null
  log "built $tag ($("$docker" image inspect -f '{{.Size}}' "$tag") bytes)"
}

python_standin() {
  rootfs_tarball python python3.11 python3-venv ca-certificates netbase tzdata
  mkdir -p "$work/ctx-python"
  cp "$ca_bundle" "$work/ctx-python/host-ca-certificates.crt"
  finish "$python_tag" python <<EOF
FROM framecast-standin/python-rootfs:$suite
COPY host-ca-certificates.crt /etc/ssl/host-ca-certificates.crt
RUN ln -s /usr/bin/python3 /usr/local/bin/python && ln -s /usr/bin/python3 /usr/local/bin/python3
ENV LANG=C.UTF-8 \\
    PIP_CERT=/etc/ssl/host-ca-certificates.crt \\
    SSL_CERT_FILE=/etc/ssl/host-ca-certificates.crt \\
    NODE_EXTRA_CA_CERTS=/etc/ssl/host-ca-certificates.crt
CMD ["python3"]
EOF
}

redis_standin() {
  rootfs_tarball redis redis-server redis-tools
  mkdir -p "$work/ctx-redis"
  # The official image builds Redis with protected mode off; Debian's is on, which refuses the
  # other containers when no password is set.
  cat >"$work/ctx-redis/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
if [ "$1" = redis-server ]; then
  shift
  exec redis-server --protected-mode no "$@"
fi
exec "$@"
EOF
  chmod +x "$work/ctx-redis/docker-entrypoint.sh"
  finish "$redis_tag" redis <<EOF
FROM framecast-standin/redis-rootfs:$suite
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
EOF
}

wanted=()
available "$python_tag" || wanted+=(python)
available "$redis_tag" || wanted+=(redis)
if [ ${#wanted[@]} -eq 0 ]; then
  log "$python_tag and $redis_tag are present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v debootstrap >/dev/null 2>&1; then
  log "needs root and debootstrap (apt-get install debootstrap) to build ${wanted[*]}"
  exit 1
fi
work=$(mktemp -d /var/tmp/framecast-standin.XXXXXX)
for name in "${wanted[@]}"; do
  "${name}_standin"
done
