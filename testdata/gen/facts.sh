#!/usr/bin/env bash
# Prints, for each capture given, the facts tshark dissects (used to write testdata/README.md).
for f in "$@"; do
  enc=$(capinfos -E -T "$f" 2>/dev/null | tail -1 | cut -f2)
  n=$(tshark -r "$f" 2>/dev/null | wc -l)
  f1() { tshark -r "$f" -Y "$1" -T fields -e "$2" 2>/dev/null | sort | uniq -c | awk '{printf "%s×%s ", $2, $1}'; }
  echo "$(basename "$f") | $enc | $n pkts | status: $(f1 http.response.code http.response.code)| upgrade: $(f1 http.upgrade http.upgrade)| sni: $(f1 tls.handshake.extensions_server_name tls.handshake.extensions_server_name)| alert: $(f1 tls.alert_message.desc tls.alert_message.desc)| close: $(f1 websocket.payload.close.status_code websocket.payload.close.status_code)| fin: $(tshark -r "$f" -Y 'tcp.flags.fin==1' 2>/dev/null | wc -l) rst: $(tshark -r "$f" -Y 'tcp.flags.reset==1' 2>/dev/null | wc -l) | dns: $(f1 dns dns.qry.name)$(f1 'dns.flags.response==1' dns.flags.rcode)"
done
