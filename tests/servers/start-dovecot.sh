#!/bin/bash
# Dovecot IMAP (plain + STARTTLS) and IMAPS on 127.0.0.1, user alice/secret, Maildir in a temp dir.
# Why: the IMAP source must be tested against a real server (UID semantics, MOVE, CREATE, TLS).
# Maildir supports folder creation; MOVE (RFC 6851) is built into Dovecot 2.3.
# Run as root (mail processes run as $MAILUSER, default "imaptest", created if missing) or rootless.
# Prints KEY=VALUE lines: IMAPDIR IMAPHOST IMAPPORT IMAPSPORT IMAPUSER IMAPPASSWORD CAFILE MAILDIR CONF PIDFILE
# Stop:  kill $(cat $IMAPDIR/run/master.pid); wait for the pid file to go; rm -rf $IMAPDIR
set -euo pipefail
[ -x /usr/sbin/dovecot ] || { echo "start-dovecot: /usr/sbin/dovecot missing (apt-get install dovecot-imapd)" >&2; exit 3; }
if [ "$(id -u)" = 0 ]; then MAILUSER=${MAILUSER:-imaptest}; else MAILUSER=$(id -un); fi  # dovecot refuses uid 0
for _ in 1 2 3 4 5; do   # a parallel run may be creating the same account (useradd locks /etc/passwd)
  id "$MAILUSER" >/dev/null 2>&1 && break
  useradd -M -s /usr/sbin/nologin "$MAILUSER" >/dev/null 2>&1 || sleep 0.2
done
id "$MAILUSER" >/dev/null 2>&1 || { echo "start-dovecot: cannot create user $MAILUSER" >&2; exit 1; }
D=$(mktemp -d /tmp/imaptest.XXXXXX); chmod 755 "$D"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
IMAP_PORT=$(free_port); IMAPS_PORT=$(free_port)
MUID=$(id -u "$MAILUSER"); MGID=$(id -g "$MAILUSER")
mkdir -p "$D/run" "$D/state" "$D/mail/alice/Maildir"/{cur,new,tmp}
chown -R "$MUID:$MGID" "$D/mail"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$D/key.pem" -out "$D/cert.pem" 2>/dev/null
echo "alice:{PLAIN}secret:$MUID:$MGID::$D/mail/alice" > "$D/users"   # user:pass:uid:gid::home
cat > "$D/dovecot.conf" <<CONF
protocols = imap
listen = 127.0.0.1
base_dir = $D/run
state_dir = $D/state
log_path = $D/dovecot.log
ssl = yes
ssl_cert = <$D/cert.pem
ssl_key = <$D/key.pem
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
shutdown_clients = yes
passdb {
  driver = passwd-file
  args = scheme=PLAIN $D/users
}
userdb {
  driver = passwd-file
  args = $D/users
}
namespace inbox {
  inbox = yes
  separator = .
}
protocol imap {
  mail_max_userip_connections = 100
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
    ssl = yes
  }
}
service stats {
  unix_listener stats-writer {
    mode = 0666
  }
}
CONF
if [ "$(id -u)" != 0 ]; then   # rootless: everything runs as the invoking user, no chroot
  cat >> "$D/dovecot.conf" <<CONF
default_login_user = $(id -un)
default_internal_user = $(id -un)
default_internal_group = $(id -gn)
service imap-login {
  chroot =
}
service anvil {
  chroot =
}
CONF
fi
fail() {
  echo "start-dovecot: $*" >&2
  [ -f "$D/dovecot.log" ] && tail -n 20 "$D/dovecot.log" >&2
  [ -f "$D/run/master.pid" ] && kill -9 "$(cat "$D/run/master.pid")" 2>/dev/null
  rm -rf "$D"
  exit 1
}
/usr/bin/doveconf -c "$D/dovecot.conf" -n >/dev/null 2>"$D/doveconf.err" || fail "bad config: $(cat "$D/doveconf.err")"
# dovecot daemonizes; its stdio must not keep the caller's pipe open
/usr/sbin/dovecot -c "$D/dovecot.conf" </dev/null >/dev/null 2>"$D/start.err" || fail "dovecot did not start: $(cat "$D/start.err")"
up=0
for _ in $(seq 200); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$IMAP_PORT") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$IMAPS_PORT") 2>/dev/null; then up=1; break; fi
  sleep 0.025
done
[ $up = 1 ] || fail "not listening on $IMAP_PORT/$IMAPS_PORT"
cat <<OUT
IMAPDIR=$D
IMAPHOST=127.0.0.1
IMAPPORT=$IMAP_PORT
IMAPSPORT=$IMAPS_PORT
IMAPUSER=alice
IMAPPASSWORD=secret
CAFILE=$D/cert.pem
MAILDIR=$D/mail/alice/Maildir
CONF=$D/dovecot.conf
PIDFILE=$D/run/master.pid
OUT
