#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod /modules/$m || echo "vm: insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /lower || { echo "vm: cannot mount the host root"; poweroff -f; }
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out /out || { echo "vm: cannot mount the out share"; poweroff -f; }
mount -t tmpfs tmpfs /upper
mkdir -p /upper/u /upper/w
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w /newroot || { echo "vm: overlay failed"; poweroff -f; }
for d in proc sys dev; do mount --move /$d /newroot/$d 2>/dev/null || mount -t $d $d /newroot/$d; done
mkdir -p /newroot/out && mount --bind /out /newroot/out
exec chroot /newroot /bin/sh /out/guest.sh
