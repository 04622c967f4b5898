#!/bin/sh
# lint_layers.sh ROOT: every folder includes only the folders below it (docs/architecture.md,
# "The folders"). Fails on any include that goes upward or sideways, on an include that climbs
# out of its folder with "..", and on an unqualified include of a header that lives in a folder.
#
#   tools/                       everything below
#   models/                      backends/ formats/ tokenizer/ graph/ core/
#   tokenizer/                   formats/ graph/ core/   (reads and writes GGUF through formats/)
#   backends/   formats/         graph/ core/            (siblings: neither uses the other)
#   graph/                       core/
#   core/                        -
#   include/loom.h               the public API's types: any folder may include it
#
# Inside backends/, cpu/ and vulkan/ do not use each other; both use backends/*.h.
# A bench/ folder below a library folder is that folder's own tool and follows its rules.
root="${1:-.}"
cd "$root" || exit 1

allowed() { # folder of the including file -> the folders it may include
    case "$1" in
        core) echo "core" ;;
        graph) echo "core graph" ;;
        formats) echo "core graph formats" ;;
        backends) echo "core graph backends" ;;
        tokenizer) echo "core graph formats tokenizer" ;;
        models) echo "core graph formats backends tokenizer models" ;;
        tools) echo "core graph formats backends tokenizer models tools" ;;
    esac
}

bad=0
for dir in core graph formats backends tokenizer models tools; do
    [ -d "$dir" ] || continue
    ok=$(allowed "$dir")
    for f in $(find "$dir" -name '*.c' -o -name '*.h' | sort); do
        grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
            sed 's/^\([0-9]*\):[^"]*"\([^"]*\)".*/\1 \2/' > "${TMPDIR:-/tmp}/lint_layers.$$"
        while read -r line inc; do
            where="$f:$line: #include \"$inc\""
            case "$inc" in
                *..*) echo "$where: climbs out with '..'"; bad=1; continue ;;
                */*) ;;
                *)  # unqualified: only include/'s public header or a generated file
                    if [ "$inc" != loom.h ] && [ -n "$(find core graph formats backends tokenizer models tools -name "$inc" 2>/dev/null | head -n 1)" ]; then
                        echo "$where: name the folder (#include \"<folder>/$inc\")"
                        bad=1
                    fi
                    continue ;;
            esac
            top=${inc%%/*}
            case " $ok " in
                *" $top "*) ;;
                *) echo "$where: $dir/ may use only: $ok"; bad=1; continue ;;
            esac
            if [ "$dir" = backends ] && [ "$top" = backends ]; then
                sub=$(echo "$f" | cut -d/ -f2)
                isub=$(echo "$inc" | cut -d/ -f2)
                case "$inc" in backends/*/*) ;; *) isub="" ;; esac
                case "$f" in backends/*/*) ;; *) sub="" ;; esac
                if [ -n "$isub" ] && [ "$isub" != "$sub" ]; then
                    echo "$where: backends/$sub uses backends/$isub (sideways)"
                    bad=1
                fi
            fi
        done < "${TMPDIR:-/tmp}/lint_layers.$$"
        rm -f "${TMPDIR:-/tmp}/lint_layers.$$"
    done
done
if [ $bad -ne 0 ]; then
    echo "FAIL: a folder uses only the folders below it (docs/architecture.md, The folders)"
    exit 1
fi
echo PASS
