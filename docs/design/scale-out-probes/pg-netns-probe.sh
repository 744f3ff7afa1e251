#!/bin/bash
# PostgreSQL on a "data" namespace, psql from a "service" namespace, across a bridge namespace.
set -eu
P=fabq; NET=198.18.0
d=$(mktemp -d /tmp/pgnetns.XXXX); chown postgres $d
B=/usr/lib/postgresql/15/bin
cleanup() {
  runuser -u postgres -- $B/pg_ctl -D $d/data -m fast stop >/dev/null 2>&1 || true
  for n in $P-sw $P-data $P-a; do ip netns del $n 2>/dev/null || true; done
  rm -rf /etc/netns/$P-* "$d"
}
trap cleanup EXIT
ip netns add $P-sw; ip -n $P-sw link add br0 type bridge; ip -n $P-sw link set br0 up
for pair in data:10 a:11; do
  h=${pair%%:*}; o=${pair##*:}
  ip netns add $P-$h
  ip link add $P-$h-0 type veth peer name $P-$h-1
  ip link set $P-$h-0 netns $P-$h; ip link set $P-$h-1 netns $P-sw
  ip -n $P-sw link set $P-$h-1 master br0 up
  ip -n $P-$h link set $P-$h-0 name eth0
  ip -n $P-$h addr add $NET.$o/24 dev eth0; ip -n $P-$h link set eth0 up; ip -n $P-$h link set lo up
  mkdir -p /etc/netns/$P-$h; printf "127.0.0.1 localhost\n$NET.10 postgres nats\n" > /etc/netns/$P-$h/hosts
done
runuser -u postgres -- $B/initdb -D $d/data -A trust -U app >/dev/null
echo "host all all $NET.0/24 trust" >> $d/data/pg_hba.conf
ip netns exec $P-data runuser -u postgres -- $B/pg_ctl -D $d/data -l $d/log -w -o "-p 5432 -k $d -c listen_addresses=$NET.10" start >/dev/null
ip netns exec $P-a psql -h postgres -p 5432 -U app -d postgres -Atc "select 'connected from ' || inet_client_addr() || ' to ' || inet_server_addr()"
