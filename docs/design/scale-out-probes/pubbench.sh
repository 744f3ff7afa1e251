#!/bin/bash
cd /tmp/natsproof && rm -rf st5 && mkdir st5
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
nats-server -js -sd /tmp/natsproof/st5 -a 127.0.0.1 -p $PORT > pb.log 2>&1 & pid=$!
sleep 1
t0=$(awk '{print $14+$15}' /proc/$pid/stat)
/usr/bin/time -f "client CPU: user %U s, sys %S s" timeout 100 ./pubbench nats://127.0.0.1:$PORT 100000
t1=$(awk '{print $14+$15}' /proc/$pid/stat)
echo "nats-server CPU during both runs: $(( (t1 - t0) * 10 )) ms for 125000 messages (clock ticks of 10 ms)"
kill $pid; wait $pid 2>/dev/null; rm -rf st5
