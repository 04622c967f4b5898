#!/bin/sh
# One table drives each command's option parsing and its --help (tools/options.c). For every
# command `loom --help` lists:
#  - `loom CMD --help` exits 0 and shows every option name of the table (LOOM_OPTS_LIST=1 prints
#    them from the same table the parser reads), aliases and positional arguments included;
#  - an unknown option exits 2 with one line on stderr naming it;
#  - a value that is not a number, for every int and num option, and a word that is not among
#    the choices, for every choice option, exits 2 with one line naming the option and the value.
# usage: options_help.sh LOOM
loom=$1
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

cmds=$("$loom" --help | awk '/^commands:/ {on = 1; next} on && /^  [a-z]/ {print $1}')
[ -n "$cmds" ] || { echo "FAIL: loom --help lists no commands"; exit 1; }
n_opts=0
for c in $cmds; do
    "$loom" "$c" --help >"$t/help" 2>"$t/err" || bad "$c --help exits $?: $(cat "$t/err")"
    LOOM_OPTS_LIST=1 "$loom" "$c" >"$t/list" 2>"$t/err" || bad "$c: LOOM_OPTS_LIST=1 exits $?"
    grep -q . "$t/list" || [ "$c" = devices ] || bad "$c: the table lists no option"
    while IFS="$(printf '\t')" read -r name type; do
        n_opts=$((n_opts + 1))
        if [ "$type" = args ]; then
            grep -qF -- "$name" "$t/help" || bad "$c --help does not show its arguments '$name'"
            continue
        fi
        # the name as a whole word: "  -p, --prompt TEXT", not inside another option's name
        grep -qE -- "(^|[ ,])$name([ ,]|\$)" "$t/help" || bad "$c --help does not show $name"
        case $type in
        int | num | choice)
            "$loom" "$c" "$name" notavalue >/dev/null 2>"$t/err"
            rc=$?
            [ $rc -eq 2 ] || bad "$c $name notavalue: exit $rc, expected 2"
            [ "$(grep -c . "$t/err")" -eq 1 ] || bad "$c $name notavalue: not one line: $(cat "$t/err")"
            grep -qF -- "$name" "$t/err" && grep -qF "notavalue" "$t/err" ||
                bad "$c $name notavalue: the error does not name the option and the value: $(cat "$t/err")"
            ;;
        esac
    done <"$t/list"
    "$loom" "$c" --no-such-option >/dev/null 2>"$t/err"
    rc=$?
    [ $rc -eq 2 ] || bad "$c --no-such-option: exit $rc, expected 2"
    [ "$(grep -c . "$t/err")" -eq 1 ] && grep -qF -- "--no-such-option" "$t/err" ||
        bad "$c --no-such-option: expected one line naming it, got: $(cat "$t/err")"
done
[ $fail -eq 0 ] || exit 1
echo "ok: $(echo $cmds | wc -w) commands, $n_opts table entries in their --help; unknown options and bad values rejected"
