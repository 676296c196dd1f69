#!/bin/busybox sh
# shellcheck shell=dash
# /init of the numalab-guest initramfs (PID 1). Busybox only, no udev.
# Loads the virtio modules in dependency order, finds the guest-agent virtio-serial port
# and starts qemu-ga on it, prints a marker to the console, then idles forever
# (PID 1 must never exit, or the kernel panics).
/bin/busybox mkdir -p /proc /bin /sbin /usr/bin /usr/sbin
# --install resolves its own path through /proc/self/exe, so mount /proc first.
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin

mkdir -p /sys /dev /run /tmp /var
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /run
[ -e /var/run ] || ln -s /run /var/run

echo "[numalab-guest] kernel $(uname -r), cpus online: $(cat /sys/devices/system/cpu/online)"

# Order matters: the .deb ships no modules.dep. A module that is built in (or already loaded)
# makes insmod fail; that is fine.
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_console; do
    if [ -f "/lib/modules/$m.ko" ]; then
        insmod "/lib/modules/$m.ko" 2>/dev/null || echo "[numalab-guest] insmod $m: failed (built in or loaded?)"
    fi
done

port=""
i=0
while [ -z "$port" ] && [ "$i" -lt 30 ]; do
    for n in /sys/class/virtio-ports/*/name; do
        [ -f "$n" ] || continue
        if [ "$(cat "$n")" = "org.qemu.guest_agent.0" ]; then
            port="/dev/$(basename "$(dirname "$n")")"
        fi
    done
    [ -n "$port" ] || { sleep 1; i=$((i + 1)); }
done

if [ -n "$port" ]; then
    i=0
    while [ ! -c "$port" ] && [ "$i" -lt 10 ]; do sleep 1; i=$((i + 1)); done
    if qemu-ga -m virtio-serial -p "$port" -d -t /run; then
        echo "NUMALAB-GUEST-READY qemu-ga started on $port"
    else
        echo "NUMALAB-GUEST-ERROR qemu-ga failed to start on $port"
    fi
else
    echo "NUMALAB-GUEST-ERROR no virtio port named org.qemu.guest_agent.0"
fi

while :; do
    sleep 3600
done
