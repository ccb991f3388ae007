#!/usr/bin/env bash
# Builds the Debian package with cargo-deb and checks what it holds:
#   bash systemd/build-deb.sh        -> target/debian/distilld_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
# Without nasm, libjpeg-turbo is built without its SIMD: a package must not ship that.
command -v nasm >/dev/null || { echo "nasm is needed (apt-get install nasm)" >&2; exit 1; }
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo deb
# mozjpeg-sys's build script does not rerun when nasm appears: a target/ built without it
# would still ship libjpeg-turbo without SIMD. Its AVX2 IDCT must be in the binary.
nm target/release/distilld | grep -q ' jsimd_idct_islow_avx2$' || {
  echo "libjpeg-turbo was built without SIMD: cargo clean -p mozjpeg-sys --release, then again" >&2; exit 1; }
deb=$(ls -t target/debian/distilld_*.deb | head -1)
dpkg-deb -I "$deb"
dpkg-deb -c "$deb"
contents=$(dpkg-deb -c "$deb")
for path in ./usr/bin/distilld ./etc/distilld/distilld.toml ./usr/lib/sysusers.d/distilld.conf \
            ./usr/lib/systemd/system/distilld.service ./usr/share/doc/distilld/README.md; do
  grep -q " $path\$" <<<"$contents" || { echo "missing $path in $deb" >&2; exit 1; }
done
dpkg-deb -I "$deb" conffiles | grep -qx /etc/distilld/distilld.toml || { echo "config is not a conffile" >&2; exit 1; }
postinst=$(dpkg-deb -I "$deb" postinst)
grep -q "USR2" <<<"$postinst" || { echo "postinst does not hand over on upgrade" >&2; exit 1; }
# The user must exist before the unit is first started.
users=$(grep -n "systemd-sysusers" <<<"$postinst" | head -1 | cut -d: -f1)
start=$(grep -n "deb-systemd-invoke start" <<<"$postinst" | head -1 | cut -d: -f1)
[ -n "$users" ] && [ -n "$start" ] && [ "$users" -lt "$start" ] || { echo "postinst starts the unit before creating its user" >&2; exit 1; }
echo "ok: $deb"
