#!/usr/bin/env bash
# Records the test captures in testdata/ from real software on loopback:
# nginx (reverse proxy and TLS terminator), a python `websockets` server, dnsmasq, tcpdump.
# Needs root (tcpdump, DNS on port 53, a temporary loopback MTU for the bulk scenario) and
# Debian's nginx-light, dnsmasq-base, tinyproxy, chromium, tcpdump, tshark, openssl, plus pip's
# websockets and dnslib.
# CI does not run this: the captures it makes are committed. Usage: bash testdata/generate.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
gen="$here/gen"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${tp:-}" ] && kill -INT "$tp" 2>/dev/null || true
  wait 2>/dev/null || true
  ip link set lo mtu 65536 2>/dev/null || true
  rm -rf "$work"
  return 0
}
trap cleanup EXIT

# A self-signed certificate for ws.test (the wss scenarios).
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=ws.test \
  -addext subjectAltName=DNS:ws.test -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
mkdir -p "$work/tmp"
cp "$gen/nginx.conf" "$work/nginx.conf"
mkdir -p "$work/html"
cp "$gen/browser.html" "$work/html/"
chmod 755 "$work" "$work/html" && chmod 644 "$work/html/browser.html"  # nginx workers read it

dnsmasq --no-daemon --port=53 --listen-address=127.0.0.1 --bind-interfaces --no-resolv \
  --no-hosts --address=/ws.test/127.0.0.1 --address=/plain.test/127.0.0.2 --address=/no-such-host.test/ \
  --pid-file="$work/dnsmasq.pid" 2>"$work/dnsmasq.log" &
pids+=($!)
python3 "$gen/servers.py" >"$work/servers.log" 2>&1 &
pids+=($!)
nginx -p "$work" -c nginx.conf 2>"$work/nginx.log" &
pids+=($!)
# Forward proxies for the CONNECT scenarios: one open, one that wants credentials.
for conf in tinyproxy-open.conf tinyproxy-auth.conf; do
  tinyproxy -d -c "$gen/$conf" >"$work/$conf.log" 2>&1 &
  pids+=($!)
done
sleep 1.5

# record NAME SCENARIO [tcpdump options...]
record() {
  local name=$1 scenario=$2
  shift 2
  # ONLY="a b" records just those scenarios (the others' committed captures stay as they are).
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $scenario "* ]]; then return 0; fi
  local out="$here/$name"
  tcpdump -i lo -U -w "$out" "$@" "${FILTER:-port 53 or portrange 18000-18999}" 2>/dev/null &
  tp=$!
  sleep 1
  echo "scenario $scenario -> $name" >&2
  timeout 60 python3 "$gen/client.py" "$scenario" "$work/cert.pem"
  sleep 1
  kill -INT "$tp"
  wait "$tp" 2>/dev/null || true
  tp=
}

record ws-direct-ok.pcap direct-ok --time-stamp-precision=nano
record ws-proxy-ok.pcap proxy-ok
record ws-proxy-stripped.pcap proxy-stripped
record ws-proxy-stripped-rewrite.pcap proxy-stripped-rewrite
record ws-auth-subrequest.pcap auth-subrequest
record ws-reject-403.pcap reject-403
record ws-reject-404.pcap reject-404
record ws-reject-426.pcap reject-426
record ws-reject-500.pcap reject-500
record ws-auth-redirect.pcap auth-redirect
record ws-proxy-502.pcap proxy-502
record ws-proxy-504.pcap proxy-504
record wss-ok.tmp.pcap wss-ok
record wss-alert.pcap wss-alert
record wss-aborted.pcap wss-aborted
record tls12-close-notify.pcap tls12-close-notify
record wss-to-plain-port.pcap tls-to-plain
record ws-reset-after-101.pcap reset-after-101
record ws-idle-timeout.pcap idle-timeout
record ws-ping-survives.pcap ping-survives
record ws-bad-accept.tmp.pcap bad-accept
record tcp-refused.pcap refused
record dns-failure.pcap dns-failure
record dns-tcp.pcap dns-tcp
record ws-split-request.pcap split-request
record wss-connect-ok.pcap connect-ok
record wss-connect-407.pcap connect-407
# A real browser: what it sends is not what a script sends (its own headers, Origin, the
# page load first). Only the test ports: Chromium may look up names of its own.
FILTER='portrange 18000-18999' record ws-browser-chromium.pcap browser
# A realistic MTU for the bulk run, so that WebSocket frames span TCP segments.
ip link set lo mtu 1500
record ws-bulk-mixed.pcap bulk-mixed
ip link set lo mtu 65536

export SSLKEYLOGFILE="$work/keys.log"
record wss-keylog.tmp.pcap wss-keylog
export SSLKEYLOGFILE="$work/keys-13.log"
record wss-keys-13.tmp.pcap wss-keys-13
export SSLKEYLOGFILE="$work/keys-12.log"
record wss-keys-12.tmp.pcap wss-keys-12
export SSLKEYLOGFILE="$work/keys-hrr.log"
record wss-keys-hrr-update.tmp.pcap wss-keys-hrr-update
# The client's side only (the terminator's leg), the keys in a separate file (--keylog).
export SSLKEYLOGFILE="$here/wss-keys-client-only.keys"
if [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" wss-keys-client-only "* ]]; then rm -f "$SSLKEYLOGFILE"; fi
FILTER='port 18446' record wss-keys-client-only.pcap wss-keys-client-only
unset SSLKEYLOGFILE

# Format variety: pcapng, gzip-compressed pcapng, pcapng with the TLS key log embedded,
# pcapng with two interfaces of different link types, SLL2 (`tcpdump -i any`).
if [ -f "$here/wss-ok.tmp.pcap" ]; then
  editcap -F pcapng "$here/wss-ok.tmp.pcap" "$here/wss-ok.pcapng"
fi
if [ -f "$here/ws-bad-accept.tmp.pcap" ]; then
  editcap -F pcapng "$here/ws-bad-accept.tmp.pcap" "$here/ws-bad-accept.pcapng"
  gzip -9 -n -f "$here/ws-bad-accept.pcapng"
fi
if [ -f "$here/wss-keylog.tmp.pcap" ]; then
  editcap -F pcapng --inject-secrets "tls,$work/keys.log" "$here/wss-keylog.tmp.pcap" "$here/wss-keylog.pcapng"
fi
for v in 13 12 hrr-update; do
  if [ -f "$here/wss-keys-$v.tmp.pcap" ]; then
    log="$work/keys-$v.log"
    [ "$v" = hrr-update ] && log="$work/keys-hrr.log"
    editcap -F pcapng --inject-secrets "tls,$log" "$here/wss-keys-$v.tmp.pcap" "$here/wss-keys-$v.pcapng"
  fi
done
rm -f "$here"/*.tmp.pcap
# Link layers and tunnels loopback cannot record: the proxy-stripped packets, each wrapped.
if [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" proxy-stripped "* ]]; then
  mkdir -p "$here/encap"
  python3 "$gen/encapsulate.py" "$here/ws-proxy-stripped.pcap" "$here/encap"
fi
if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" proxy-ok-any "* ]]; then exit 0; fi
tcpdump -i any -U -w "$here/ws-proxy-ok-any.pcap" 'port 53 or portrange 18000-18999' 2>/dev/null &
tp=$!
sleep 1
timeout 60 python3 "$gen/client.py" proxy-ok "$work/cert.pem"
sleep 1
kill -INT "$tp"
wait "$tp" 2>/dev/null || true

# Two interfaces with different link types in one pcapng (Ethernet and Linux SLL2).
mergecap -F pcapng -w "$here/ws-two-links.pcapng" "$here/ws-reject-403.pcap" "$here/ws-proxy-ok-any.pcap"
ls -l "$here"/*.pcap* >&2
