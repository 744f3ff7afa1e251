#!/bin/bash
# Durable commit rates of Debian's PostgreSQL 15 on this machine (loopback, fsync on), pgbench.
set -u
d=$(mktemp -d /tmp/pgbench/cluster.XXXX); chown postgres "$d"
B=/usr/lib/postgresql/15/bin
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
runuser -u postgres -- $B/initdb -D "$d/data" -A trust -U app >/dev/null
runuser -u postgres -- $B/pg_ctl -D "$d/data" -l "$d/log" -w -o "-p $PORT -k $d -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=app PGDATABASE=postgres
psql -qc "create table t (id bigserial primary key, k text not null, v bytea not null)"
cat > /tmp/pgbench/one.sql <<'SQL'
insert into t (k, v) values (md5(random()::text), '\x0102030405060708090a0b0c0d0e0f10');
SQL
cat > /tmp/pgbench/batch.sql <<'SQL'
insert into t (k, v) select md5(random()::text), '\x0102030405060708090a0b0c0d0e0f10' from generate_series(1, 100);
SQL
cat > /tmp/pgbench/pipe.sql <<'SQL'
\startpipeline
insert into t (k, v) values (md5(random()::text), '\x0102030405060708090a0b0c0d0e0f10');
insert into t (k, v) values (md5(random()::text), '\x0102030405060708090a0b0c0d0e0f10');
insert into t (k, v) values (md5(random()::text), '\x0102030405060708090a0b0c0d0e0f10');
insert into t (k, v) values (md5(random()::text), '\x0102030405060708090a0b0c0d0e0f10');
insert into t (k, v) values (md5(random()::text), '\x0102030405060708090a0b0c0d0e0f10');
insert into t (k, v) values (md5(random()::text), '\x0102030405060708090a0b0c0d0e0f10');
insert into t (k, v) values (md5(random()::text), '\x0102030405060708090a0b0c0d0e0f10');
insert into t (k, v) values (md5(random()::text), '\x0102030405060708090a0b0c0d0e0f10');
\endpipeline
SQL
{
for c in 1 16 64; do
  echo "== one-row autocommit insert, clients=$c"; pgbench -n -M prepared -c $c -j 2 -T 8 -f /tmp/pgbench/one.sql 2>&1 | grep -E "latency average|tps =|latency stddev"
done
echo "== 100-row insert per transaction, clients=4"; pgbench -n -M prepared -c 4 -j 2 -T 8 -f /tmp/pgbench/batch.sql 2>&1 | grep -E "latency average|tps ="
echo "== pipeline of 8 autocommit inserts, clients=8"; pgbench -n -M prepared -c 8 -j 2 -T 8 -f /tmp/pgbench/pipe.sql 2>&1 | grep -E "latency average|tps ="
echo "== pg_test_fsync (2 s per test)"; $B/pg_test_fsync -s 2 -f "$d/fsync.test" 2>&1 | grep -E "fdatasync|open_datasync|fsync " | head -6
}
runuser -u postgres -- $B/pg_ctl -D "$d/data" -m fast stop >/dev/null
rm -rf "$d"
