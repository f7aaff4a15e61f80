# benches/lib.sh: shell helpers shared by the benches/run-bench*.sh scripts
# (sourced after they cd to the repository root).

# median: the median of the numbers on stdin, one per line ("na" if none).
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "na";
  else print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# field NAME: the values of NAME=number in a stampede-bench result line.
field() { grep -oE "(^| )$1=[0-9.]+" | cut -d= -f2; }

# free_port: a loopback TCP port nothing listens on (the kernel's pick).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# stop_pids TENTHS PID...: SIGTERM each, wait up to TENTHS x 0.1 s for each,
# then SIGKILL what is left; reaps them (they must be this shell's children).
stop_pids() {
  local n=$1 p
  shift
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do
    for _ in $(seq "$n"); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
}
