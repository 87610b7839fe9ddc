#!/usr/bin/env bash
# The GPU subset of kdviz's benchmarks and tests, in under 8 minutes on one H100/H200 (the steps' limits add to 470 s):
#   1. bench/train.py       kdviz's loop vs a plain Trainer on the embedded student's and teacher's architectures
#   2. bench/attribution.py kdviz's batched attribution vs Captum on the teacher's architecture (needs captum)
#      bench/click_cost.py  one Teacher click per method on the teacher's architecture vs the floor and Captum
#   3. pytest -m gpu        the tiny models attribute and train on CUDA as on the CPU (tests/test_gpu.py)
#   4. bench/reproduce.py   the reproduction's smoke size (tiny models) on CUDA, CommonsenseQA and ANLI
#
# A GPU machine gets only this repository (no internet, no pip): the embedded GGUF weights cannot travel, so the
# benchmarks build the real architectures with random weights (`random:<name>`, bench/arch.py); speed depends on
# the architecture, not the weights. Each step checks what it imports first and says what it skips and why; on a
# machine without CUDA the whole script says so and stops. Outputs (one log per step) go to $OUT when it is set
# (the device tool collects it), else bench/results/gpu.
#
#   bash bench/gpu.sh
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-bench/results/gpu}
mkdir -p "$OUT_DIR"
SUMMARY="$OUT_DIR/summary.txt"
: >"$SUMMARY"
export HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

say() { echo "$*" | tee -a "$SUMMARY"; }
has() { "$PY" -c "import $1" 2>/dev/null; }
# step NAME SECONDS COMMAND...: runs with a time limit, its output to $OUT_DIR/NAME.log and the terminal
step() {
    local name=$1 limit=$2 started=$SECONDS
    shift 2
    echo "== $name: $*"
    timeout "$limit" "$@" 2>&1 | tee "$OUT_DIR/$name.log"
    local code=${PIPESTATUS[0]}
    say "$name: exit $code in $((SECONDS - started)) s$([ "$code" = 124 ] && echo " (stopped at its ${limit} s limit)")"
}

if ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    torch_line=$("$PY" -c "import torch; print('torch', torch.__version__)" 2>/dev/null || echo "no torch")
    say "no CUDA device ($PY: $torch_line): skipped every GPU step (bench/train.py, bench/attribution.py and"
    say "bench/click_cost.py on cuda, pytest -m gpu, bench/reproduce.py --size smoke on cuda). Nothing else needs a GPU: run the CPU"
    say "benchmarks and tests as bench/README.md says."
    exit 0
fi
say "$("$PY" -c "import torch; print(torch.cuda.get_device_name(0), '| torch', torch.__version__)")"
missing=""
for module in transformers accelerate peft scipy pytest captum plotly gradio trl datasets gguf; do
    has "$module" || missing="$missing $module"
done
say "python packages missing here:${missing:- none}"
core_ok=$(has transformers && has accelerate && has scipy && echo yes)

if [ -n "$core_ok" ]; then
    for student in random:embedded-student random:embedded-teacher; do
        step "train-${student#random:}" 70 "$PY" bench/train.py --student "$student" --device cuda --steps 30 \
            --warmup 5 --batch-size 16
    done
else
    say "skipped bench/train.py: it needs transformers, accelerate and scipy"
fi

if [ -n "$core_ok" ] && has captum; then
    step attribution 90 "$PY" bench/attribution.py --model random:embedded-teacher --n 64 --ig-n 16 \
        --captum-limit 8 --batch-size 16
    step click 50 "$PY" bench/click_cost.py --model random:embedded-teacher --n 8 --slow-n 2
else
    say "skipped bench/attribution.py and bench/click_cost.py: they time kdviz against Captum, which is not installed here"
fi

if has pytest && [ -n "$core_ok" ]; then
    step pytest-gpu 60 "$PY" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider
else
    say "skipped pytest -m gpu: it needs pytest, transformers, accelerate and scipy"
fi

if [ -n "$core_ok" ] && has plotly; then
    data_root=../shared/data
    if [ ! -f "$data_root/cqa/train.jsonl" ]; then  # the shared data did not travel: the bundled demo set
        data_root="$OUT_DIR/data"
        mkdir -p "$data_root/cqa"
        cp assets/cqa_demo.jsonl "$data_root/cqa/train.jsonl"
        say "../shared/data is not here: the reproduction smoke runs CommonsenseQA on assets/cqa_demo.jsonl only"
    fi
    for dataset in cqa anli1; do
        if [ -f "$data_root/$dataset/train.jsonl" ]; then
            step "reproduce-$dataset" 65 "$PY" bench/reproduce.py --dataset "$dataset" --size smoke --device cuda \
                --data-root "$data_root" --out "$OUT_DIR/reproduce" --cache-dir "$OUT_DIR/cache"
        fi
    done
else
    say "skipped bench/reproduce.py --size smoke: it needs transformers, accelerate, scipy and plotly (its chart)"
fi
say "summary in $SUMMARY"
