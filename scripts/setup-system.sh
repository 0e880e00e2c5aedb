#!/usr/bin/env bash
# Install the Debian 12 packages bpfring needs and mount the pseudo file
# systems it uses.  Idempotent: does nothing when everything is already there.
#
#   python3-venv, python3-dev, gcc  the project's venv and its C accelerator
#   make                            the README's commands
#   clang                           compiles BPF C (bpfring.build)
#   libbpf-dev                      libbpf.so.1 and the bpf_helpers.h headers
#   bpftool                         generates vmlinux.h from the kernel's BTF
#   iproute2                        ip/tc: the attach tests' network namespaces and veths
#   strace                          the test that counts the user-space runtime's system calls
#
# Package lists are refreshed first when they are missing (a fresh system has
# none) or older than a day, and once more if an install fails on stale lists.
set -euo pipefail
pkgs=("$@")
((${#pkgs[@]})) || pkgs=(python3-venv python3-dev gcc make clang libbpf-dev bpftool iproute2 strace)

missing=()
for pkg in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done

lists_fresh() {
    # true when apt has package lists no older than a day
    [[ -n $(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null \
            | head -n 1) ]]
}

if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: missing packages: ${missing[*]}" \
             "(run as root, or: sudo apt-get install ${missing[*]})" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    updated=0
    if ! lists_fresh; then
        apt-get update -qq
        updated=1
    fi
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/bpfring-apt.log 2>&1; then
        if ((updated)); then
            cat /tmp/bpfring-apt.log >&2
            echo "setup: apt-get install ${missing[*]} failed (output above)" >&2
            exit 1
        fi
        apt-get update -qq    # the lists were stale: refresh once and retry
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

if [[ $(id -u) -eq 0 ]]; then
    mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing || true
    mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf || true
fi
