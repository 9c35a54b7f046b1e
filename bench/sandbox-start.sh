#!/usr/bin/env bash
# What the workload sandbox costs per process start: the same program started
# N times directly and N times inside the sandbox paved builds (bubblewrap with
# the bundle as /, the host's libraries, its own PID namespace, and — as root —
# setpriv dropping to an unprivileged user), side by side in one run. A
# workload pays it once per start or restart, and each exec probe once per check.
#
#   bench/sandbox-start.sh [N]   (default 200; needs bubblewrap)
set -euo pipefail
n="${1:-200}"
command -v bwrap >/dev/null || { echo "bench/sandbox-start.sh needs bubblewrap (Debian package bubblewrap)" >&2; exit 1; }
bundle=$(mktemp -d)
trap 'rm -rf "$bundle"' EXIT
mkdir -p "$bundle/bin" && cp "$(type -P true)" "$bundle/bin/true"
drop=()
if [ "$(id -u)" = 0 ]; then
  drop=(--ro-bind "$(command -v setpriv)" /.paved/setpriv -- /.paved/setpriv --reuid=258556 --regid=258556
        --clear-groups --inh-caps=-all --bounding-set=-all)
else
  drop=(--unshare-user --cap-drop ALL --)
fi
sandboxed() {
  bwrap --die-with-parent --unshare-pid --unshare-ipc --unshare-uts --unshare-cgroup-try \
    --proc /proc --dev /dev --perms 1777 --tmpfs /tmp --perms 0755 --dir /usr --perms 0755 --dir /.paved \
    --ro-bind "$bundle/bin" /bin --ro-bind /usr/lib /usr/lib --symlink usr/lib /lib \
    --ro-bind-try /usr/lib64 /usr/lib64 --symlink usr/lib64 /lib64 \
    "${drop[@]}" "$@"
}
ms() { awk "BEGIN{printf \"%.2f\", ($2 - $1) / $n / 1000000}"; }
start=$(date +%s%N); for _ in $(seq "$n"); do "$bundle/bin/true"; done; mid=$(date +%s%N)
for _ in $(seq "$n"); do sandboxed /bin/true; done; end=$(date +%s%N)
echo "direct:    $(ms "$start" "$mid") ms per start ($n starts)"
echo "sandboxed: $(ms "$mid" "$end") ms per start ($n starts)"
