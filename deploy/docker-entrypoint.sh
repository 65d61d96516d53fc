#!/bin/sh
# Entrypoint of the creamery image (docs/deploy.md#docker).
#
# Arguments starting with a creamery command or a flag run creamery; anything else (`sh`) runs
# as given. Before creamery starts, the package volume is checked:
# - as the creamery user (the default): an unreadable volume stops the container, a read-only
#   one gets a warning (uploads will fail); both print the fix;
# - as root (`docker run --user root`): files of the volume (and of the cache directory) not
#   owned by the creamery user are given to it, then creamery runs as that user, never as root.
set -eu

packages=${CREAMERY_PACKAGES_DIRECTORY:-/data/packages}
uid=$(id -u creamery 2>/dev/null || echo 9898)
gid=$(id -g creamery 2>/dev/null || echo 9898)
# pypiserver's image read PYPISERVER_PORT; creamery reads CREAMERY_PORT itself.
export CREAMERY_PORT="${CREAMERY_PORT:-${PYPISERVER_PORT:-8080}}"

say() {
    echo "docker-entrypoint: $*" >&2
}

fix_hint() {
    say "fix: on the host, run: sudo chown -R $uid:$gid DIR (the directory mounted on $packages),"
    say "     or start the container once with --user root: it then hands the volume to uid $uid."
}

check_volume() {
    [ -d "$packages" ] || return 0
    owner="owner uid $(stat -c %u "$packages")"
    if [ ! -r "$packages" ] || [ ! -x "$packages" ]; then
        say "error: $packages ($owner) can't be read by uid $(id -u)."
        fix_hint
        exit 1
    fi
    if [ ! -w "$packages" ]; then
        say "warning: $packages ($owner) is read-only for uid $(id -u):"
        say "         serving works, uploads will fail."
        fix_hint
    fi
}

case "${1:-}" in
    "" | -* | run | update | passwd | yank | unyank | remove) set -- creamery "$@" ;;
esac

if [ "$1" = creamery ]; then
    if [ "$(id -u)" = 0 ]; then
        for dir in "$packages" "${CREAMERY_CACHE_DIR:-}"; do
            if [ -n "$dir" ] && [ -d "$dir" ]; then
                find "$dir" ! -user "$uid" -exec chown "$uid:$gid" {} +
            fi
        done
        exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
    fi
    check_volume
fi
exec "$@"
