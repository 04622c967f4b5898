# Sourced after gpu_env.sh by the tensor-core prefill scripts beside it (gpu_cm2.sh,
# gpu_cm_variants.sh, gpu_qtile.sh): the lines their summary opens with and their check step.
# Uses $L (gpu_env.sh), $O (the output folder) and $sum (the summary file).
# gpu_head [WARNING]: empties $sum, then writes the GPU (nvidia-smi) and loom's Vulkan and
#   cooperative-matrix lines (`loom devices`) to it and to stdout; "WARNING: <WARNING>" as well
#   where the device offers no usable cooperative matrix.
# matmul_check LABEL PROGRAM ENV...: PROGRAM of the pack (test_vulkan_ops or test_vulkan_quant) with
#   LOOM_TEST_FILTER=matmul (its matmul parts against the CPU) and ENV (NAME=VALUE...), on the CPUs
#   of $CHECK_CPUS (taskset) when set; its output goes to $O/check.txt, one line to $sum and stdout:
#   exit status, checks, on how many of its 3 backend configs the matmul took cooperative matrices
#   (and how many coopmat2), test_matmul's time; then the knobs' own lines (vulkan: LOOM_VK_...) and
#   the first failed CHECKs.
# knob_checks KNOB VALUES: empties $O/check.txt, then matmul_check of test_vulkan_ops and
#   test_vulkan_quant under KNOB=V for each V of VALUES (a space-separated list).
gpu_head() {
    : >"$sum"
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee -a "$sum"
    "$L/loom" devices | grep -E "^vulkan|cooperative" | tee -a "$sum"
    [ -z "${1:-}" ] || "$L/loom" devices | grep -q "cooperative matrix: yes (" || echo "WARNING: $1" | tee -a "$sum"
}

matmul_check() {
    label=$1 prog=$2
    shift 2
    log=/tmp/matmul-check-log.txt
    env "$@" LOOM_TEST_FILTER=matmul timeout 240 ${CHECK_CPUS:+taskset -c "$CHECK_CPUS"} "$L/$prog" >$log 2>&1
    rc=$?
    envs=" ($*)"
    [ "$*" = "$label" ] && envs= # knob_checks' label is its one NAME=VALUE
    { echo "== $label $prog$envs: rc $rc"; cat $log; } >>"$O/check.txt"
    echo "check $label $prog: rc $rc, $(grep -E '^[0-9]+ checks' $log | tail -1)," \
        "coopmat on $(grep -c 'cooperative-matrix matmul on' $log) of 3 configs" \
        "($(grep -c 'cooperative-matrix matmul on (coopmat2)' $log) coopmat2)," \
        "$(grep -m1 '^test_matmul' $log | awk '{print $2, $3}')" | tee -a "$sum"
    grep "vulkan: LOOM_VK_" $log | sort -u | head -3 | cut -c1-300 | tee -a "$sum"
    grep -m8 "CHECK(" $log | cut -c1-300 | tee -a "$sum"
}

knob_checks() {
    : >"$O/check.txt"
    for v in $2; do
        for t in test_vulkan_ops test_vulkan_quant; do matmul_check "$1=$v" $t "$1=$v"; done
    done
}
