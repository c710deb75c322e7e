#!/usr/bin/env bash
# Every benchmark's device-sized configuration, one after another, in under 8 minutes on one
# accelerator; JSON into one folder. For a session that is lent a GPU:
#
#   bash benchmarks/device_suite.sh OUT_DIR        (default: $OUT, else benchmarks/results/device)
#
# Each step runs under its own time limit and the suite stops starting steps once its budget
# (SUITE_BUDGET_S, default 450 s) is spent; OUT_DIR/suite.json records, per step, the command,
# exit code and wall time (skipped steps too), so a partial run still says what it measured.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-benchmarks/results/device}}"
mkdir -p "$out"
budget="${SUITE_BUDGET_S:-450}"
start=$(date +%s)
export MPLBACKEND=Agg JAXPRUNE_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import jax; print('jax', jax.__version__, jax.devices())" >"$out/devices.txt" 2>&1
cat "$out/devices.txt"
steps=()

step() {  # step NAME LIMIT_S COMMAND...
  local name=$1 limit=$2
  shift 2
  local now=$(( $(date +%s) - start ))
  if (( now + limit > budget )); then
    echo "skip $name (budget: ${now}s used of ${budget}s)"
    steps+=("{\"name\": \"$name\", \"skipped\": true}")
    return
  fi
  echo "== $name: $*"
  local t0=$(date +%s)
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  local wall=$(( $(date +%s) - t0 ))
  tail -n 3 "$out/$name.log"
  steps+=("{\"name\": \"$name\", \"command\": \"$*\", \"rc\": $rc, \"wall_s\": $wall}")
}

# The search on the CIFAR-10 protocol's shapes (5,000 stimuli), both directions, vs its twin.
step bench_lenet 90 python -m jaxprune.cli bench --model lenet5_cifar --stimuli 5000 \
  --no-progress --json "$out/bench_lenet5_cifar.json"
# A large backbone at 224x224 on 120 stimuli (randomly initialised: no weights needed).
step bench_vgg16 90 python -m jaxprune.cli bench --model vgg16 --stimuli 120 --no-sequential \
  --no-progress --json "$out/bench_vgg16.json"
step bench_efficientnet 60 python -m jaxprune.cli bench --model efficientnet_lite0 --stimuli 120 \
  --no-sequential --no-progress --json "$out/bench_efficientnet_lite0.json"
step train_throughput 60 python benchmarks/train_throughput.py --seeds 1 8 50 --steps 20 \
  --repeats 2 --out "$out/train_throughput.json"
step search_cost 60 python benchmarks/search_cost.py --quick --out "$out/search_cost.json"
step bench_alternate 60 python -m jaxprune.cli bench --model lenet5_cifar --stimuli 5000 \
  --direction alternate --no-progress --json "$out/bench_alternate.json"
step bench_global 60 python -m jaxprune.cli bench --model lenet5_cifar --stimuli 5000 \
  --direction global --no-progress --json "$out/bench_global.json"
step search_cost_mnist 60 python benchmarks/search_cost.py --protocol mnist --quick \
  --out "$out/search_cost_mnist.json"
# Seed scaling on the one accelerator (8 forced devices apply to CPUs only).
step seed_scaling 60 python benchmarks/seed_scaling.py --seeds 1,8,64,256 --devices 1 \
  --stimuli 128 --train-steps 50 --max-seconds 60 --out "$out/seed_scaling.json"
step backbone_scaling 60 python benchmarks/backbone_scaling.py --sizes 224 \
  --budgets 256MiB,4GiB --max-seconds 25 --out "$out/backbone_scaling.json"
step conv_grad_cost 30 python benchmarks/conv_grad_cost.py --quick --out "$out/conv_grad_cost.json"
step precision_effect 60 python benchmarks/precision_effect.py --out "$out/precision_effect.json"
step cka_cost 40 python benchmarks/cka_cost.py --quick --out "$out/cka_cost.json"
step rsa_cost 40 python benchmarks/rsa_cost.py --quick --out "$out/rsa_cost.json"
step circuits_cost 30 python benchmarks/circuits_cost.py --quick --out "$out/circuits_cost.json"
step featurevis_cost 30 python benchmarks/featurevis_cost.py --quick --out "$out/featurevis_cost.json"

{
  echo "{\"suite\": \"benchmarks/device_suite.sh\", \"budget_s\": $budget,"
  echo " \"wall_s\": $(( $(date +%s) - start )), \"steps\": ["
  for i in "${!steps[@]}"; do
    sep=","; (( i == ${#steps[@]} - 1 )) && sep=""
    echo "  ${steps[$i]}$sep"
  done
  echo "]}"
} >"$out/suite.json"
echo "wrote $out/suite.json"
