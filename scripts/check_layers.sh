#!/usr/bin/env bash
# check_layers.sh: every file in src/ includes only headers of its own layer or of those below.
# The layers are src/'s folders in the order of the Makefile's SRC_LAYERS (docs/architecture.md,
# "Layout"). Prints one TAP line, "ok - layers" or "not ok - layers" followed by each offending
# include as a "#" line, and exits non-zero on any. Usage: check_layers.sh [REPO_ROOT].
set -u
cd "${1:-$(dirname "$0")/..}" || exit 2

read -r -a order <<<"$(sed -n 's/^SRC_LAYERS[[:space:]]*:*=[[:space:]]*//p' Makefile)"
declare -A rank
for i in "${!order[@]}"; do
    rank[${order[$i]}]=$i
done

problems=()
# Which folder each header is in; a name in two folders could not be told apart on the include path.
declare -A home
for h in src/*/*.h; do
    [ -e "$h" ] || continue
    name=${h##*/}
    dir=${h#src/}
    dir=${dir%%/*}
    if [ -n "${home[$name]:-}" ] && [ "${home[$name]}" != "$dir" ]; then
        problems+=("$name is in both src/${home[$name]}/ and src/$dir/")
    fi
    home[$name]=$dir
done

for d in src/*/; do
    dir=${d#src/}
    dir=${dir%/}
    [ -n "${rank[$dir]:-}" ] || problems+=("src/$dir/ is not a layer (SRC_LAYERS: ${order[*]})")
done
for f in src/*.[ch]; do
    [ -e "$f" ] && problems+=("$f is outside every layer folder")
done

for f in src/*/*.[ch]; do
    [ -e "$f" ] || continue
    dir=${f#src/}
    dir=${dir%%/*}
    [ -n "${rank[$dir]:-}" ] || continue # reported above
    while read -r h; do
        name=${h##*/}
        to=${home[$name]:-}
        [ -n "$to" ] || continue # not one of ours (a generated or system header)
        if [ -z "${rank[$to]:-}" ]; then
            problems+=("$f ($dir) includes $name from src/$to/, which is not a layer")
        elif [ "${rank[$to]}" -gt "${rank[$dir]}" ]; then
            problems+=("$f ($dir) includes $name ($to, a higher layer)")
        fi
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
done

if [ ${#problems[@]} -eq 0 ]; then
    echo "ok - layers"
    exit 0
fi
echo "not ok - layers"
for p in "${problems[@]}"; do
    echo "# $p"
done
exit 1
