#!/bin/sh
# Runs inside the guest, chrooted into the overlay of the host's root.
layout=$(sed -n 's/.*enforcer.cgroup=\([a-z0-9]*\).*/\1/p' /proc/cmdline)
mount -t tmpfs tmpfs /tmp; mount -t tmpfs tmpfs /run; mkdir -p /dev/shm /dev/pts; mount -t tmpfs tmpfs /dev/shm
mount -t bpf bpf /sys/fs/bpf; mount -t tracefs tracefs /sys/kernel/tracing; mount -t debugfs debugfs /sys/kernel/debug
case "$layout" in
v2)
  mount -t cgroup2 cgroup2 /sys/fs/cgroup
  echo "+cpu +memory +io +pids" > /sys/fs/cgroup/cgroup.subtree_control ;;
v1)
  mount -t tmpfs cgroup /sys/fs/cgroup
  for c in cpu,cpuacct memory freezer pids cpuset blkio; do mkdir -p /sys/fs/cgroup/$c; mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c || { rmdir /sys/fs/cgroup/$c; echo "vm: no v1 $c on this kernel"; }; done ;;
hybrid)
  mount -t tmpfs cgroup /sys/fs/cgroup
  for c in cpu,cpuacct memory freezer pids cpuset blkio; do mkdir -p /sys/fs/cgroup/$c; mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c || { rmdir /sys/fs/cgroup/$c; echo "vm: no v1 $c on this kernel"; }; done
  mkdir -p /sys/fs/cgroup/unified; mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified ;;
esac
ip link set lo up
# The guest kernel's modules (the host's /lib/modules is for another kernel).
release=$(uname -r)
if [ -d "$(cat /out/modules)" ]; then
  mkdir -p "/lib/modules/$release" && mount --bind "$(cat /out/modules)" "/lib/modules/$release" || echo "vm: cannot bind the kernel's modules"
else
  echo "vm: no module tree at $(cat /out/modules)"
fi
cd "$(cat /out/cwd)"
echo "vm: kernel $(uname -r), cgroup $layout: $(cat /out/cmd)"
sh -c "$(cat /out/cmd)"
echo $? > /out/exit-code
sync
poweroff -f
