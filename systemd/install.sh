#!/bin/sh
# Installs distilld on a systemd host that is not Debian (on Debian: apt install
# ./distilld_*.deb). Run as root from the repository after `cargo build --release`:
#   sh systemd/install.sh            install (or upgrade in place, without a dropped connection)
#   sh systemd/install.sh --remove   stop, disable and remove (the config in /etc/distilld stays)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
bin="$root/target/release/distilld"

if [ "${1:-}" = "--remove" ]; then
    systemctl disable --now distilld.service 2>/dev/null || true
    rm -f /usr/bin/distilld /etc/systemd/system/distilld.service /usr/lib/sysusers.d/distilld.conf
    systemctl daemon-reload
    echo "distilld removed; /etc/distilld and the distilld user are left in place"
    exit 0
fi

[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
"$bin" check-config "$root/src/default.toml" >/dev/null
install -D -m 0755 "$bin" /usr/bin/distilld.new
mv -f /usr/bin/distilld.new /usr/bin/distilld      # atomic: a running process keeps its image
install -D -m 0644 "$here/distilld.service" /etc/systemd/system/distilld.service
install -D -m 0644 "$here/distilld.sysusers" /usr/lib/sysusers.d/distilld.conf
if [ ! -e /etc/distilld/distilld.toml ]; then
    install -D -m 0644 "$root/src/default.toml" /etc/distilld/distilld.toml
fi
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers distilld.conf
elif ! getent passwd distilld >/dev/null; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin distilld
fi
systemctl daemon-reload
if systemctl is-active --quiet distilld.service; then
    systemctl kill --kill-whom=main --signal=USR2 distilld.service
    echo "distilld upgraded in place (SIGUSR2): the new binary serves, the old one drains"
else
    systemctl enable --now distilld.service
    echo "distilld installed and started: systemctl status distilld"
fi
