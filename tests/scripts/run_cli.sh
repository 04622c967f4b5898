#!/bin/sh
# loom run's options from the table in tools/cmd_run.c: --stop, --json, --special, -f (one prompt),
# --version, the warning past the trained context, and bad values named in the error (exit 2).
# usage: run_cli.sh LOOM MODEL
set -u
loom=$1 model=$2
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
run() { "$loom" run -m "$model" --device cpu -t 1 "$@"; }
js() { node -e "const o = JSON.parse(require('fs').readFileSync(0, 'utf8')); console.log($1)"; }

full=$(run -p "Once upon a time" -n 24 --temp 0 2>/dev/null) || fail "loom run"
gen=${full#Once upon a time}
# --stop: the text ends right before the first match; the match is left out
word=$(printf '%s' "$gen" | awk '{print $4}')
[ -n "$word" ] || fail "no fourth word in [$gen]"
want="Once upon a time${gen%%" $word"*}"
got=$(run -p "Once upon a time" -n 24 --temp 0 --stop " $word" --stop "zzz" 2>"$t/err") || fail "--stop"
[ "$got" = "$want" ] || fail "--stop ' $word': got [$got], want [$want]"
grep -q "stop string" "$t/err" || fail "--stop: stderr does not say why it stopped"

# --json: one object with the text loom run prints
run -p "Once upon a time" -n 24 --temp 0 --json >"$t/j" 2>/dev/null || fail "--json"
[ "$(js 'o.prompt + o.text' <"$t/j")" = "$full" ] || fail "--json text: $(cat "$t/j")"
[ "$(js 'o.tokens.length + " " + o.finish_reason' <"$t/j")" = "24 length" ] || fail "--json tokens/finish: $(cat "$t/j")"
run -p "Once upon a time" -n 24 --temp 0 --json --stop " $word" >"$t/j" 2>/dev/null || fail "--json --stop"
[ "$(js 'o.finish_reason + "|" + o.stop' <"$t/j")" = "stop| $word" ] || fail "--json with --stop: $(cat "$t/j")"

# --special: "<s>" in the prompt is the BOS token, not the letters < s >
bos=$(run -p "<s>Once" -n 1 --json --special 2>/dev/null | js 'o.prompt_tokens.join(",")') || fail "--special"
plain=$(run -p "<s>Once" -n 1 --json 2>/dev/null | js 'o.prompt_tokens.join(",")') || fail "no --special"
case "$bos" in 1,1,*) ;; *) fail "--special: '<s>Once' gave $bos, want BOS then <s> = 1,1,..." ;; esac
case "$plain" in 1,1,*) fail "without --special '<s>' must be text, got $plain" ;; esac

# -f FILE: the whole file is one prompt (two lines here), the same as -p with the newline
printf 'Once upon a time\nthere was\n' >"$t/p"
a=$(run -f "$t/p" -n 12 --temp 0 2>/dev/null) || fail "-f"
b=$(run -p "Once upon a time
there was" -n 12 --temp 0 2>/dev/null)
[ "$a" = "$b" ] || fail "-f reads one prompt: got [$a], want [$b]"
case "$a" in *"[1]"*) fail "-f split the file into prompts" ;; esac

# --version, the trained-context warning, bad values
run --version | grep -Eq '^loom [0-9]+\.[0-9]+\.[0-9]+' || fail "--version"
"$loom" --version | grep -Eq '^loom [0-9]+\.[0-9]+\.[0-9]+' || fail "loom --version"
run -p "Hi" -n 1 --ctx 8192 2>&1 >/dev/null | grep -q "warning: --ctx 8192 exceeds the model's training context" ||
    fail "no warning past the trained context"
for bad in "--temp abc" "--top-p -1" "--top-p 2" "-n x" "--min-p 1.5" "--repeat-last-n -2" "--seed -1"; do
    opt=${bad%% *}
    run -p Hi $bad >/dev/null 2>"$t/err"
    rc=$?
    [ $rc -eq 2 ] || fail "run $bad: exit $rc, want 2"
    grep -q -- "$opt expects" "$t/err" || fail "run $bad: the error does not name $opt: $(cat "$t/err")"
done
run -p Hi --nope >/dev/null 2>"$t/err"; [ $? -eq 2 ] && grep -q "unknown option '--nope'" "$t/err" || fail "unknown option"
run -p Hi --temp >/dev/null 2>"$t/err"; [ $? -eq 2 ] && grep -q -- "--temp needs a value" "$t/err" || fail "missing value"
# --help lists every option of the table, with defaults
"$loom" run --help >"$t/h" || fail "--help"
for o in --stop --json --special --min-p --repeat-penalty --frequency-penalty --presence-penalty --prompts-file --version "-f, --file"; do
    grep -q -- "$o" "$t/h" || fail "run --help lacks $o"
done
grep -q -- "--temp T .*(default 0)" "$t/h" || fail "run --help does not show the --temp default"
echo "PASS: loom run --stop, --json, --special, -f, --version, context warning, bad values"
