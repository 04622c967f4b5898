#!/bin/sh
# loom chat as a user drives it: commands (/help, /clear, /exit) never reach the model and an
# empty line does not end the chat; a full context shifts (and says so); Ctrl-C stops a reply and
# returns to the prompt, a second Ctrl-C leaves (exit 130).
# usage: chat_cli.sh LOOM MODEL
set -u
loom=$1 model=$2
t=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$t"' EXIT
fail() { echo "FAIL: $*"; for f in "$t"/out "$t"/err; do [ -f "$f" ] && { echo "--- $f"; tail -c 600 "$f"; echo; }; done; exit 1; }
chat() { "$loom" chat -m "$model" --device cpu -t 1 --temp 0 "$@"; }

# commands and empty lines
printf '/help\n\nOnce upon a time\n/clear\nThe dog\n/exit\nnever read\n' | chat --verbose -n 8 >"$t/out" 2>"$t/err" || fail "chat exited $?"
grep -q "^/clear  forget the conversation" "$t/out" || fail "/help did not print the commands"
grep -q "(conversation cleared)" "$t/out" || fail "/clear did not answer"
grep -q "turn 1: prefilled" "$t/err" || fail "the first message was not a turn (the empty line ended the chat?)"
grep -q "turn 2: prefilled [0-9]* new tokens (cache held 0)" "$t/err" || fail "after /clear the cache must be empty"
grep -q "turn 3" "$t/err" && fail "a line after /exit was read"

# a full context: the conversation shifts instead of ending
printf 'Once upon a time\nThe dog ran\nThen the cat\nAnd the bird\n' | chat --verbose --ctx 64 -n 40 >"$t/out" 2>"$t/err" ||
    fail "a full context ended the chat with $?"
grep -q "context full: the oldest [0-9]* tokens" "$t/err" || fail "a full context was not shifted (or not said)"
grep -q "turn 4: prefilled" "$t/err" || fail "the chat did not go on after the shift"

# Ctrl-C: the first stops the reply, the chat goes on; a second one leaves
mkfifo "$t/in"
"$loom" chat -m "$model" --device cpu -t 1 --temp 0 -n 1000000 --ctx 128 <"$t/in" >"$t/out" 2>"$t/err" &
pid=$!
exec 3>"$t/in"
printf 'Once upon a time\n' >&3
sleep 1
kill -INT $pid 2>/dev/null || fail "chat ended before Ctrl-C"
sleep 0.5
kill -0 $pid 2>/dev/null || fail "the first Ctrl-C ended the chat"
printf '/exit\n' >&3
exec 3>&-
wait $pid
rc=$?
[ $rc -eq 0 ] || fail "chat exited $rc after Ctrl-C and /exit"
grep -q "\[stopped\]" "$t/out" || fail "the reply was not marked as stopped"

"$loom" chat -m "$model" --device cpu -t 1 --temp 0 -n 1000000 --ctx 128 <"$t/in" >"$t/out" 2>"$t/err" &
pid=$!
exec 3>"$t/in"
printf 'Once upon a time\n' >&3
sleep 1
kill -INT $pid; sleep 0.3; kill -INT $pid
exec 3>&-
wait $pid
rc=$?
[ $rc -eq 130 ] || fail "a second Ctrl-C must leave with 130, got $rc"
echo "PASS: chat commands, empty lines, context shift, Ctrl-C"
