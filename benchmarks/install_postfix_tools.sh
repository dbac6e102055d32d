#!/usr/bin/env bash
# Extract Postfix's smtp-sink / smtp-source into .cache/postfix (no MTA is installed or started).
#
# Idempotent: exits at once when the binaries are already there. Needs apt-get and dpkg
# (Debian/Ubuntu); CI runs it as root. Run the tools with
#   LD_LIBRARY_PATH=.cache/postfix/usr/lib/postfix .cache/postfix/usr/sbin/smtp-sink ...
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.cache/postfix"

if [[ -x "$dest/usr/sbin/smtp-sink" ]]; then
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

# `apt-get download` runs as the `_apt` user when it can; a private dir avoids the
# "unsandboxed download" warning and works as root or as a normal user.
chmod 0777 "$work"
if ! apt-get download -q postfix >/dev/null 2>&1; then
    apt-get update -q >/dev/null
    apt-get download -q postfix
fi

deb="$(ls postfix_*.deb)"
mkdir -p "$dest"
dpkg -x "$deb" "$dest"

if [[ ! -x "$dest/usr/sbin/smtp-sink" ]]; then
    echo "install_postfix_tools.sh: $deb did not contain usr/sbin/smtp-sink" >&2
    exit 1
fi
echo "smtp-sink installed in $dest/usr/sbin (from $deb)"
