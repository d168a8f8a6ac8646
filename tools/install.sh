#!/bin/sh
# Sets up f2bz on a host (Debian and alike), as root, after `npm install -g f2bz` (or the tarball):
#   - the system user and group f2bz (no login, home /var/lib/f2bz)
#   - /etc/f2bz (root:f2bz 0750), the keys layout, this node's identity (`f2bz keygen`, the secret
#     owned by f2bz 0600), and /etc/f2bz/f2bz.yaml from the example if there is none
#   - /var/lib/f2bz (f2bz 0700) and /var/log/f2bz (f2bz 0750)
#   - the systemd units, with ExecStart pointing at this f2bz, and the fail2ban jail and filter
# It enables and starts nothing: choose the daemons this host runs (see README.md).
#
# Running it again changes nothing that exists: an identity, a config or a user is never replaced;
# owners and modes are set again. --uninstall removes the units and the fail2ban snippets and keeps
# keys, config, state and the user; --purge removes those too.
#
#   install.sh [--root DIR] [--bin PATH] [--name NAME] [--uninstall | --purge]
#     --root DIR   install into DIR instead of / (a throwaway root; users go to DIR/etc/passwd,
#                  nothing is started or reloaded)
#     --bin PATH   the f2bz the units run (default: `command -v f2bz`, else this package's bin/f2bz.js)
#     --name NAME  this node's name (default: the host name)
set -eu
umask 022

here=$(cd "$(dirname "$0")" && pwd -P)
package=$(dirname "$here")
root=
bin=
name=
mode=install

die() {
  printf 'install.sh: %s\n' "$*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case $1 in
    --root) [ $# -ge 2 ] || die "--root needs a directory"; root=$2; shift 2 ;;
    --bin) [ $# -ge 2 ] || die "--bin needs a path"; bin=$2; shift 2 ;;
    --name) [ $# -ge 2 ] || die "--name needs a node name"; name=$2; shift 2 ;;
    --uninstall) mode=uninstall; shift ;;
    --purge) mode=purge; shift ;;
    -h | --help) sed -n '2,/^set -eu$/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1'" ;;
  esac
done

[ "$(id -u)" = 0 ] || die "run as root (it creates a system user and root-owned files)"
if [ -n "$root" ]; then
  [ -d "$root" ] || die "root directory '$root' does not exist"
  root=$(cd "$root" && pwd -P)
  [ "$root" != / ] || root=
fi
# With --root, the account tools work on DIR/etc (--prefix), not on this host's accounts.
prefix=${root:+--prefix $root}
live=
[ -z "$root" ] && [ -d /run/systemd/system ] && live=yes

units="f2bz-monitor.service f2bz-publisher.service f2bz-subscriber.service f2bz-ban-helper.service f2bz-ban-helper.socket"

remove_units() {
  if [ -n "$live" ]; then
    # shellcheck disable=SC2086
    systemctl disable --now $units >/dev/null 2>&1 || true
  fi
  for unit in $units; do rm -f "$root/etc/systemd/system/$unit"; done
  rm -f "$root/etc/fail2ban/jail.d/f2bz.conf" "$root/etc/fail2ban/filter.d/f2bz.conf"
  if [ -n "$live" ]; then systemctl daemon-reload; fi
  if [ -z "$root" ] && command -v fail2ban-client >/dev/null && fail2ban-client ping >/dev/null 2>&1; then
    fail2ban-client reload >/dev/null || echo "fail2ban did not reload; run: fail2ban-client reload" >&2
  fi
}

if [ "$mode" != install ]; then
  remove_units
  echo "removed the f2bz systemd units and the fail2ban jail and filter"
  if [ "$mode" = purge ]; then
    rm -rf "$root/etc/f2bz" "$root/var/lib/f2bz" "$root/var/log/f2bz"
    # shellcheck disable=SC2086
    if grep -q '^f2bz:' "$root/etc/passwd"; then userdel $prefix f2bz; fi
    # shellcheck disable=SC2086
    if grep -q '^f2bz:' "$root/etc/group"; then groupdel $prefix f2bz; fi
    echo "removed /etc/f2bz (keys and config), /var/lib/f2bz, /var/log/f2bz and the user f2bz"
  else
    echo "kept /etc/f2bz (keys and config), /var/lib/f2bz, /var/log/f2bz and the user f2bz (--purge removes them)"
  fi
  exit 0
fi

# The f2bz the units run: an absolute path, so that the unit does not depend on PATH.
if [ -z "$bin" ]; then
  bin=$(command -v f2bz || true)
  [ -n "$bin" ] || bin=$package/bin/f2bz.js
fi
case $bin in /*) ;; *) die "--bin '$bin' is not an absolute path" ;; esac
[ -x "$bin" ] || die "f2bz '$bin' is not an executable file"
case $bin in *[!A-Za-z0-9/._+-]*) die "f2bz path '$bin' has characters a unit line would need quoted" ;; esac
[ -n "$name" ] || name=$(hostname)
printf '%s' "$name" | grep -Eq '^[A-Za-z0-9._-]{1,64}$' ||
  die "node name '$name' is not valid (letters, digits, '.', '_', '-', at most 64): use --name"

# shellcheck disable=SC2086
if ! grep -q '^f2bz:' "$root/etc/passwd"; then
  useradd $prefix --system --user-group --home-dir /var/lib/f2bz --shell /usr/sbin/nologin f2bz
fi
# Numeric ids from the target's own files: with --root, this host may not know the user.
uid=$(awk -F: '$1 == "f2bz" { print $3 }' "$root/etc/passwd")
gid=$(awk -F: '$1 == "f2bz" { print $4 }' "$root/etc/passwd")
[ -n "$uid" ] && [ -n "$gid" ] || die "user f2bz is missing from $root/etc/passwd"

dir() { # dir PATH OWNER MODE
  install -d "$1"
  chown "$2" "$1"
  chmod "$3" "$1"
}

etc=$root/etc/f2bz
keys=$etc/keys
# Config and keys belong to root; the daemons read them through the group.
dir "$etc" "0:$gid" 0750
dir "$keys" "0:$gid" 0750
dir "$keys/authorized" 0:0 0755
dir "$keys/authorized/monitors" 0:0 0755
dir "$keys/authorized/subscribers" 0:0 0755
dir "$keys/revoked" 0:0 0755
# The publisher records unknown keys here; `f2bz keys add` would create it root-owned.
dir "$keys/pending" "$uid:$gid" 0755
dir "$root/var/lib/f2bz" "$uid:$gid" 0700
dir "$root/var/log/f2bz" "$uid:$gid" 0750

secret=$keys/$name.key_secret
if [ ! -e "$secret" ]; then
  "$bin" keygen --name "$name" --dir "$keys"
fi
# The daemons refuse a secret that is not theirs (or root's) or that others may read.
chown "$uid:$gid" "$secret"
chmod 0600 "$secret"

config=$etc/f2bz.yaml
if [ ! -e "$config" ]; then
  sed -e "s/^  name: web1\$/  name: $name/" -e "s|^  identity: keys/web1.key_secret\$|  identity: keys/$name.key_secret|" \
    "$package/config/f2bz.example.yaml" >"$config.tmp"
  mv "$config.tmp" "$config"
fi
chown "0:$gid" "$config"
chmod 0640 "$config"

install -d "$root/etc/systemd/system"
for unit in $units; do
  sed "s|^\\(Exec[A-Za-z]*=[-+!@:]*\\)/usr/local/bin/f2bz |\\1$bin |" "$here/systemd/$unit" >"$root/etc/systemd/system/$unit.tmp"
  chmod 0644 "$root/etc/systemd/system/$unit.tmp"
  mv "$root/etc/systemd/system/$unit.tmp" "$root/etc/systemd/system/$unit"
done
install -d "$root/etc/fail2ban/jail.d" "$root/etc/fail2ban/filter.d"
install -m 0644 "$here/fail2ban/jail.d/f2bz.conf" "$root/etc/fail2ban/jail.d/f2bz.conf"
install -m 0644 "$here/fail2ban/filter.d/f2bz.conf" "$root/etc/fail2ban/filter.d/f2bz.conf"

if [ -n "$live" ]; then systemctl daemon-reload; fi
cat <<EOF
f2bz is set up for node '$name' (units run $bin).
Next: edit $config (f2bz check-config --config $config), then, as this host needs:
  systemctl enable --now f2bz-publisher.service
  systemctl enable --now f2bz-monitor.service
  systemctl enable --now f2bz-ban-helper.socket f2bz-subscriber.service
  fail2ban-client reload     # loads the f2bz jail
EOF
