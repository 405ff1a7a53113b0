# Times the phases of a run, for `make test` and .ci/run: `phase NAME COMMAND...` runs the command
# and appends "NAME SECONDS" to the file $SERIN_PHASES; `report_phases TITLE` prints them all.
# A regression in any phase then shows in every run's last lines.

phase() {
    local name=$1 start=$SECONDS status=0
    shift
    "$@" || status=$?
    echo "$name $((SECONDS - start))" >> "$SERIN_PHASES"
    return $status
}

report_phases() {
    awk -v title="$1" '
        { seconds[NR] = $2; names[NR] = $1; total += $2 }
        END {
            printf "%s, seconds per phase:", title
            for (i = 1; i <= NR; i++) printf " %s %d,", names[i], seconds[i]
            printf " in all %d (%d:%02d)\n", total, total / 60, total % 60
        }' "$SERIN_PHASES"
}
