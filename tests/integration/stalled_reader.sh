#!/usr/bin/env bash
# A restoring client that stops reading: ferry-repo's sends to it time out
# after --idle-timeout and it is dropped with that said in the log, while
# other clients are served meanwhile; the stalled client's restore then
# fails instead of hanging. The send path under test is the TLS output
# buffer (proto/tls.c, wbuffer_on): a send that cannot finish must still
# end as "timed out", not wait forever or pass for done.
#
# How the client stalls, with real parts only: `ferry restore --output -`
# into a FIFO that is held open and never read. Its writer blocks on the
# pipe, its ring of decoded blocks (64 MiB) fills, its receiver stops
# reading, and the socket buffers fill behind it; 192 MiB of random data
# is more than all of those hold.
source "$(dirname "$0")/lib.sh"

make_certs
start_repo --idle-timeout 2
head -c $((192 * 1048576)) /dev/urandom >"$T/big.img"
backup_json "$T/big.img"
id=$(json "$T/last.json" 'j["backup_id"]')

note "a restore into a pipe nobody reads"
mkfifo "$T/pipe"
exec 3<>"$T/pipe"   # held open, never read
"$FERRY" --config "$T/agent.conf" restore "$id" --disk 0 --output - >"$T/pipe" 2>"$T/stalled.err" 3>&- &
stalled=$!
CLEANUP_CMDS+=("kill -9 $stalled 2>/dev/null")
for _ in $(seq 1 300); do
  grep -q "timed out" "$T/repo.log" && break
  sleep 0.1
done
grep -q "sending to .*timed out" "$T/repo.log" || fail "no send timeout in the repository log: $(tail -5 "$T/repo.log")"

note "other clients are served meanwhile"
"$FERRY" --config "$T/agent.conf" list >"$T/list.out" || fail "list while a client stalls"
grep -q "$id" "$T/list.out" || fail "list: $(cat "$T/list.out")"

note "the stalled restore fails once its pipe is read again"
cat "$T/pipe" >/dev/null 3>&- &
drain=$!
# fd 3 goes only once the reader has the FIFO open: a FIFO without a
# reader would fail the restore's write with EPIPE instead.
for _ in $(seq 1 100); do
  ls -l "/proc/$drain/fd" 2>/dev/null | grep -q "$T/pipe" && break
  sleep 0.05
done
exec 3>&-
for _ in $(seq 1 600); do kill -0 "$stalled" 2>/dev/null || break; sleep 0.1; done
kill -0 "$stalled" 2>/dev/null && fail "the stalled restore still runs 60 s after its pipe is read: $(cat "$T/stalled.err")"
rc=0; wait "$stalled" || rc=$?
wait "$drain" || fail "draining the pipe failed"
[[ $rc != 0 ]] || fail "the stalled restore reported success"
# The stream ends in the middle of a TLS record: the client says the
# connection ended, never that the server refused its certificate (it
# did, when the alert the client itself sent about the cut record was
# taken for the server's).
grep -q "connection ended in the middle of a TLS record\|connection closed by peer" "$T/stalled.err" ||
  fail "stalled restore: $(cat "$T/stalled.err")"
if grep -qi "certificate\|alert" "$T/stalled.err"; then fail "misreported: $(cat "$T/stalled.err")"; fi
echo "stalled restore: $(cat "$T/stalled.err")"
echo "stalled_reader: ok"
