#!/usr/bin/env bash
# lwtkit demo: the seed's story in two throwaway network namespaces.
#   client (10.0.0.2) --veth-- server (10.0.0.3); web servers on 8080 and 8081 on both
# 1. egress: a program on the client's route 10.0.0.3/32 (lwt_out) drops
#    TCP to port 8080; 8081 still works; counters show what got through;
#    detach restores the route.
# 2. ingress: the same program on the client's local-table route of its own
#    address 10.0.0.2 (lwt_in, headroom 14) drops incoming TCP to 8080.
# Everything lives in the two namespaces, which are removed on exit.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
    # Namespaces and BPF need root: go through sudo when there is one.
    command -v sudo >/dev/null && exec sudo -E "$0" "$@"
    echo "demo.sh: run it as root (it creates network namespaces and loads BPF programs)" >&2
    exit 1
fi
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "[demo] building lwt"
cargo build --release --quiet --bin lwt
LWT="$PWD/target/release/lwt"

CLIENT="lwtdemo-client-$$"
SERVER="lwtdemo-server-$$"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for ns in "$CLIENT" "$SERVER"; do "$LWT" -n "$ns" reset >/dev/null 2>&1 || true; done
    ip netns del "$CLIENT" 2>/dev/null || true
    ip netns del "$SERVER" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
fetch() { # fetch NS URL: prints the outcome of one HTTP request
    if ip netns exec "$1" curl -s -o /dev/null -m 2 -w '%{http_code}' "$2" >"$WORK/code" 2>/dev/null; then
        echo "    $2 -> HTTP $(cat "$WORK/code")"
    else
        echo "    $2 -> FAILED (no answer within 2 s)"
    fi
}

step "setting up namespaces $CLIENT and $SERVER joined by a veth pair"
ip netns add "$CLIENT"
ip netns add "$SERVER"
ip -n "$CLIENT" link add veth-c type veth peer name veth-s netns "$SERVER"
ip -n "$CLIENT" addr add 10.0.0.2/24 dev veth-c
ip -n "$SERVER" addr add 10.0.0.3/24 dev veth-s
for ns in "$CLIENT" "$SERVER"; do ip -n "$ns" link set lo up; done
ip -n "$CLIENT" link set veth-c up
ip -n "$SERVER" link set veth-s up
mkdir -p "$WORK/www" && echo hello >"$WORK/www/index.html"
for port in 8080 8081; do
    ip netns exec "$SERVER" python3 -m http.server "$port" --bind 10.0.0.3 --directory "$WORK/www" >/dev/null 2>&1 &
    PIDS+=($!)
done
for port in 8080 8081; do
    ip netns exec "$CLIENT" python3 -m http.server "$port" --bind 10.0.0.2 --directory "$WORK/www" >/dev/null 2>&1 &
    PIDS+=($!)
done
sleep 1
echo "client reaches both web servers:"
fetch "$CLIENT" http://10.0.0.3:8080/
fetch "$CLIENT" http://10.0.0.3:8081/

step "compiling a third-party C program: drop TCP to port 8080 (examples/bpf/drop_tcp_8080.c)"
show clang -O2 -g -target bpf -I"/usr/include/$(uname -m)-linux-gnu" -c examples/bpf/drop_tcp_8080.c -o "$WORK/drop.o"

step "egress: attach it to the client's route 10.0.0.3/32 (lwt_out), and lwtkit's built-in count on lwt_xmit"
show "$LWT" -n "$CLIENT" attach 10.0.0.3/32 --dev veth-c --hook out --obj "$WORK/drop.o"
show "$LWT" -n "$CLIENT" attach 10.0.0.3/32 --dev veth-c --hook xmit --builtin count
show ip -n "$CLIENT" route show 10.0.0.3/32
show "$LWT" -n "$CLIENT" list

step "port 8080 now fails, 8081 still works"
fetch "$CLIENT" http://10.0.0.3:8080/
echo "counters after the 8080 attempt (its packets were dropped at lwt_out, before lwt_xmit):"
show "$LWT" -n "$CLIENT" stats
fetch "$CLIENT" http://10.0.0.3:8081/
echo "counters after the 8081 request (its packets passed both hooks):"
show "$LWT" -n "$CLIENT" stats

step "detach: the route lwtkit created is removed, 8080 works again"
show "$LWT" -n "$CLIENT" detach 10.0.0.3/32
fetch "$CLIENT" http://10.0.0.3:8080/

step "ingress: the same program on the local-table route of 10.0.0.2 (lwt_in, headroom 14), in the client's namespace"
echo "now 10.0.0.3 is the one connecting, to the web servers on 10.0.0.2:"
fetch "$SERVER" http://10.0.0.2:8080/
show ip -n "$CLIENT" route show table local 10.0.0.2
show "$LWT" -n "$CLIENT" attach 10.0.0.2/32 --local --dev veth-c --hook in --headroom 14 --obj "$WORK/drop.o"
show ip -n "$CLIENT" route show table local 10.0.0.2
fetch "$SERVER" http://10.0.0.2:8080/
fetch "$SERVER" http://10.0.0.2:8081/

step "detach restores the kernel's local route exactly as it was"
show "$LWT" -n "$CLIENT" detach 10.0.0.2/32 --local
show ip -n "$CLIENT" route show table local 10.0.0.2
fetch "$SERVER" http://10.0.0.2:8080/

step "the same without writing C: a filter policy, each seed program is one rule"
show "$LWT" -n "$CLIENT" filter create web
show "$LWT" -n "$CLIENT" filter rule add web dst 10.0.0.3/32 proto tcp dport 8080 drop log
show "$LWT" -n "$CLIENT" filter attach web 10.0.0.3/32 --dev veth-c --hook out
"$LWT" -n "$CLIENT" events --count 1 --timeout 5 --pcap "$WORK/drops.pcap" >"$WORK/events.txt" 2>/dev/null &
EVENTS=$!
sleep 0.5
fetch "$CLIENT" http://10.0.0.3:8080/
fetch "$CLIENT" http://10.0.0.3:8081/
wait "$EVENTS" || true
echo "the ring-buffer event of the first dropped packet (also written to a pcap file):"
sed 's/^/    /' "$WORK/events.txt"
show "$LWT" -n "$CLIENT" filter show web
show "$LWT" -n "$CLIENT" stats
echo "ingress, the seed's second program, as one rule on the local route of 10.0.0.2:"
show "$LWT" -n "$CLIENT" filter create in8080
show "$LWT" -n "$CLIENT" filter rule add in8080 src 10.0.0.3/32 proto tcp dport 8080 drop
show "$LWT" -n "$CLIENT" filter attach in8080 10.0.0.2/32 --local --dev veth-c --hook in
fetch "$SERVER" http://10.0.0.2:8080/
fetch "$SERVER" http://10.0.0.2:8081/
show "$LWT" -n "$CLIENT" filter detach in8080 10.0.0.2/32 --local
show "$LWT" -n "$CLIENT" filter detach web 10.0.0.3/32

step "done: namespaces removed"
