#!/bin/bash
# vsftpd (FTP + explicit FTPS, optional) on 127.0.0.1:<free port>, local account ftptest/secret.
# Why: a second, independent FTP implementation without MLSD, to test the LIST fallback.
# Needs root (a real local account with a password; PAM service "vsftpd").
# Prints KEY=VALUE lines: FTPDIR FTPHOST FTPPORT FTPUSER FTPPASSWORD FTP_HOME CAFILE PIDFILE
# Stop:  kill $(cat $FTPDIR/vsftpd.pid); rm -rf $FTPDIR
set -euo pipefail
[ -x /usr/sbin/vsftpd ] || { echo "start-vsftpd: /usr/sbin/vsftpd missing (apt-get install vsftpd)" >&2; exit 3; }
[ "$(id -u)" = 0 ] || { echo "start-vsftpd: must run as root (needs a local account)" >&2; exit 3; }
FTPUSER=${FTPUSER:-ftptest}
for _ in 1 2 3 4 5; do   # a parallel run may be creating the same account
  id "$FTPUSER" >/dev/null 2>&1 && break
  useradd -m -s /bin/sh "$FTPUSER" >/dev/null 2>&1 || sleep 0.2
done
id "$FTPUSER" >/dev/null 2>&1 || { echo "start-vsftpd: cannot create user $FTPUSER" >&2; exit 1; }
UHOME=$(getent passwd "$FTPUSER" | cut -d: -f6)   # vsftpd chdirs to it before local_root
[ -d "$UHOME" ] || { mkdir -p "$UHOME"; chown "$FTPUSER" "$UHOME"; }
echo "$FTPUSER:secret" | chpasswd
D=$(mktemp -d /tmp/vsftpdtest.XXXXXX); chmod 755 "$D"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$D/home/outbox"; chown -R "$FTPUSER" "$D/home"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$D/key.pem" -out "$D/cert.pem" 2>/dev/null
mkdir -p /var/run/vsftpd/empty   # secure_chroot_dir default; vsftpd refuses to start without it
cat > "$D/vsftpd.conf" <<CONF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$PORT
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
local_root=$D/home
chroot_local_user=NO
pasv_enable=YES
pasv_address=127.0.0.1
pam_service_name=vsftpd
seccomp_sandbox=NO
xferlog_enable=YES
vsftpd_log_file=$D/vsftpd.log
ssl_enable=YES
allow_anon_ssl=NO
force_local_logins_ssl=NO
force_local_data_ssl=NO
require_ssl_reuse=NO
rsa_cert_file=$D/cert.pem
rsa_private_key_file=$D/key.pem
CONF
fail() {
  echo "start-vsftpd: $*" >&2
  for f in "$D/vsftpd.err" "$D/vsftpd.log"; do [ -f "$f" ] && tail -n 20 "$f" >&2; done
  [ -n "${PID:-}" ] && kill -9 "$PID" 2>/dev/null
  rm -rf "$D"
  exit 1
}
/usr/sbin/vsftpd "$D/vsftpd.conf" </dev/null >/dev/null 2>"$D/vsftpd.err" &
PID=$!
echo "$PID" > "$D/vsftpd.pid"
up=0
for _ in $(seq 200); do
  kill -0 "$PID" 2>/dev/null || fail "vsftpd exited"
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then up=1; break; fi
  sleep 0.025
done
[ $up = 1 ] || fail "not listening on $PORT"
cat <<OUT
FTPDIR=$D
FTPHOST=127.0.0.1
FTPPORT=$PORT
FTPUSER=$FTPUSER
FTPPASSWORD=secret
FTP_HOME=$D/home
CAFILE=$D/cert.pem
PIDFILE=$D/vsftpd.pid
OUT
