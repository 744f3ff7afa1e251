#!/bin/bash
# Three namespaces on a bridge that lives in its own namespace (nothing in the root namespace).
set -eu
P=fabp
NET=198.18.0
cleanup() { for n in ${P}-net ${P}-h1 ${P}-h2; do ip netns del $n 2>/dev/null || true; done; }
trap cleanup EXIT
cleanup
ip netns add ${P}-net
ip -n ${P}-net link add br0 type bridge
ip -n ${P}-net link set br0 up
ip -n ${P}-net link set lo up
i=10
for h in h1 h2; do
  i=$((i+1))
  ip netns add ${P}-$h
  ip link add ${P}-$h-eth type veth peer name ${P}-$h-br
  ip link set ${P}-$h-eth netns ${P}-$h
  ip link set ${P}-$h-br netns ${P}-net
  ip -n ${P}-net link set ${P}-$h-br master br0
  ip -n ${P}-net link set ${P}-$h-br up
  ip -n ${P}-$h link set ${P}-$h-eth name eth0
  ip -n ${P}-$h addr add $NET.$i/24 dev eth0
  ip -n ${P}-$h link set eth0 up
  ip -n ${P}-$h link set lo up
done
ip netns exec ${P}-h2 bash -c "exec 3<>/dev/tcp/$NET.11/9 2>/dev/null; echo tcp-probe-done"
rm -rf /tmp/natsproof/st3; mkdir /tmp/natsproof/st3
ip netns exec ${P}-h1 timeout 30 nats-server -js -sd /tmp/natsproof/st3 -a $NET.11 -p 4222 >/tmp/natsproof/ns-server.log 2>&1 &
sleep 1
ip netns exec ${P}-h2 timeout 25 /tmp/natsproof/proof nats://$NET.11:4222 | head -3
kill %1 2>/dev/null || true; wait 2>/dev/null || true
echo "root namespace sees 198.18 addresses: $(ip addr | grep -c 198.18 || true)"
