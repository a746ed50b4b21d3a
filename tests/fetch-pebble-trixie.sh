#!/bin/sh
# Fetches Debian 13's pebble package (2.6.0, which serves ARI) and unpacks it
# into DIR, without installing it: apt-get with a private sources list, state
# and cache, then dpkg-deb -x. The mirror is the one this machine uses.
set -eu
dir=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mirror=$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
[ -n "$mirror" ] || mirror=$(sed -n 's/^deb  *\(http[^ ]*debian\)  *bookworm .*/\1/p' /etc/apt/sources.list 2>/dev/null | head -n 1)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$work/sources.list"
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
set -- -o Dir::Etc::sourcelist="$work/sources.list" -o Dir::Etc::sourceparts=/nonexistent \
	-o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" -o Debug::NoLocking=1 \
	-o APT::Architectures="$(dpkg --print-architecture)" -o APT::Sandbox::User=root
apt-get "$@" -qq update
(cd "$work" && apt-get "$@" -qq download pebble)
rm -rf "$dir"
dpkg-deb -x "$work"/pebble_*.deb "$dir"
"$dir/usr/bin/pebble" -version >/dev/null 2>&1 || true
test -x "$dir/usr/bin/pebble"
