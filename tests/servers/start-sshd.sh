#!/bin/bash
# OpenSSH sshd (SFTP only) on 127.0.0.1:<free port>, public-key auth for $SFTPUSER (default: root).
# Why: the SFTP source must meet OpenSSH's real behaviour (host key pinning, rename semantics).
# SFTP_HOME=/some/dir makes internal-sftp start there; otherwise $SSHDIR/home (with outbox/) is used.
# Prints KEY=VALUE lines: SSHDIR SSHHOST SSHPORT SSHUSER CLIENT_KEY HOST_PUB KNOWN_HOSTS SFTP_HOME PIDFILE
# Stop:  kill $(cat $SSHDIR/sshd.pid); rm -rf $SSHDIR
set -euo pipefail
[ -x /usr/sbin/sshd ] || { echo "start-sshd: /usr/sbin/sshd missing (apt-get install openssh-server)" >&2; exit 3; }
SFTPUSER=${SFTPUSER:-$( [ "$(id -u)" = 0 ] && echo root || id -un )}
D=$(mktemp -d /tmp/sftptest.XXXXXX); chmod 755 "$D"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ssh-keygen -q -t ed25519 -N '' -C host -f "$D/host_key"
ssh-keygen -q -t ed25519 -N '' -C client -f "$D/client_key"
cp "$D/client_key.pub" "$D/authorized_keys"
if [ -n "${SFTP_HOME:-}" ]; then
  HOME_DIR=$SFTP_HOME; mkdir -p "$HOME_DIR"
else
  HOME_DIR=$D/home; mkdir -p "$HOME_DIR/outbox"; chown -R "$SFTPUSER" "$HOME_DIR"
fi
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$D/host_key.pub")" > "$D/known_hosts"
[ "$(id -u)" = 0 ] && mkdir -p /run/sshd     # privilege-separation dir; sshd refuses to start without it
cat > "$D/sshd_config" <<CONF
Port $PORT
ListenAddress 127.0.0.1
HostKey $D/host_key
PidFile $D/sshd.pid
AuthorizedKeysFile $D/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowUsers $SFTPUSER
UseDNS no
Subsystem sftp internal-sftp -d $HOME_DIR
CONF
fail() {
  echo "start-sshd: $*" >&2
  [ -f "$D/sshd.log" ] && tail -n 20 "$D/sshd.log" >&2
  [ -f "$D/sshd.pid" ] && kill -9 "$(cat "$D/sshd.pid")" 2>/dev/null
  rm -rf "$D"
  exit 1
}
/usr/sbin/sshd -t -f "$D/sshd_config" 2>"$D/sshd.log" || fail "bad sshd_config"
/usr/sbin/sshd -D -e -f "$D/sshd_config" -E "$D/sshd.log" </dev/null >/dev/null 2>&1 &  # absolute path required
up=0
for _ in $(seq 200); do
  if [ -s "$D/sshd.pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then up=1; break; fi
  sleep 0.025
done
[ $up = 1 ] || fail "not listening on $PORT"
cat <<OUT
SSHDIR=$D
SSHHOST=127.0.0.1
SSHPORT=$PORT
SSHUSER=$SFTPUSER
CLIENT_KEY=$D/client_key
HOST_PUB=$D/host_key.pub
KNOWN_HOSTS=$D/known_hosts
SFTP_HOME=$HOME_DIR
PIDFILE=$D/sshd.pid
OUT
