#!/bin/sh
# Install what the BCC case of `bpfring bench rings` needs (Debian 12; run as root).
#
# BCC's Python module is a distribution package (python3-bpfcc, for the system
# Python 3, not a virtualenv): the benchmark runs it as a separate process
# with /usr/bin/python3 (override with BPFRING_BENCH_BCC_PYTHON).
#
# BCC compiles its C at run time and needs kernel headers, even though the
# benchmark's BCC program uses no kernel type.  Where the running kernel has
# no headers package (custom kernels) and no CONFIG_IKHEADERS, this installs
# the distribution's default headers; the benchmark then merges
# linux-headers-<ver>-common and -<arch> into one private tree of symlinks
# (in bpfring's cache directory) and points BCC_KERNEL_SOURCE at it.
set -eu

apt-get install -y --no-install-recommends python3-bpfcc

release=$(uname -r)
if [ -e "/lib/modules/$release/build/include/linux/kconfig.h" ] ||
   [ -e /sys/kernel/kheaders.tar.xz ]; then
	echo "kernel headers for $release found"
elif apt-cache show "linux-headers-$release" >/dev/null 2>&1; then
	apt-get install -y --no-install-recommends "linux-headers-$release"
else
	arch=$(dpkg --print-architecture)
	echo "no linux-headers-$release package; installing linux-headers-$arch instead"
	apt-get install -y --no-install-recommends "linux-headers-$arch"
fi

/usr/bin/python3 -c 'import bcc; print("bcc", bcc.__version__, "imports")'
