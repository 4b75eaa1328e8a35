#!/usr/bin/env bash
# Starts one ringtrain launcher per host over ssh and waits for all of them.
#
#   RINGTRAIN_TOKEN=... scripts/ssh-launch.sh HOSTS_FILE WORKERS_PER_NODE [launcher flags...]
#
# HOSTS_FILE lists one host name per line (blank lines and lines starting with # are skipped); the first host
# runs the coordinator on port ${RINGTRAIN_PORT:-29400}. Every host needs this repository at the same path
# (${RINGTRAIN_DIR:-$PWD}) with `npm ci` done, and must reach the first host on that port. The token travels on
# ssh's standard input, so it appears in no command line on either side.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: RINGTRAIN_TOKEN=SECRET $0 HOSTS_FILE WORKERS_PER_NODE [launcher flags...]" >&2
  exit 2
fi
hosts_file=$1
workers=$2
shift 2
: "${RINGTRAIN_TOKEN:?set RINGTRAIN_TOKEN to a shared secret; every connection of the run presents it}"
directory=${RINGTRAIN_DIR:-$PWD}
port=${RINGTRAIN_PORT:-29400}

mapfile -t hosts < <(grep -v -e '^\s*$' -e '^\s*#' "$hosts_file")
if [[ ${#hosts[@]} -eq 0 ]]; then
  echo "$hosts_file lists no host" >&2
  exit 2
fi
coordinator="${hosts[0]}:$port"

pids=()
for rank in "${!hosts[@]}"; do
  host=${hosts[$rank]}
  # printf %q quotes every argument for the remote shell.
  command=$(printf '%q ' npm run launch -- --nnodes "${#hosts[@]}" --node-rank "$rank" \
    --coordinator "$coordinator" --bind 0.0.0.0 --advertise "$host" --gpus "$workers" --run-id "ssh-$port" "$@")
  # No terminal is requested, because a terminal would echo the token read from standard input. So Ctrl-C
  # here does not reach the remote launchers; stop a run with SIGINT to node 0's launcher instead.
  ssh -o BatchMode=yes "$host" "IFS= read -r RINGTRAIN_TOKEN && export RINGTRAIN_TOKEN && cd $(printf '%q' "$directory") && $command" \
    <<<"$RINGTRAIN_TOKEN" &
  pids+=($!)
done

status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
exit "$status"
