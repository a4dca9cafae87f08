#!/usr/bin/env bash
# Fixed-seed 20-step training runs of both shipped recipes, single process; prints a SHA-256 of
# each run's final weights. Run it before and after a refactoring that must not change results:
# the digests must be equal (on the same machine and torch build).
#   tools/fixed_seed_digest.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
mkdir -p "$work"
py=.venv/bin/python
export OMP_NUM_THREADS=1 PYTHONPATH=tests
[ -f "$work/synthetic/train.csv" ] || $py -c "from helpers.corpus import make_test_corpus; make_test_corpus(__import__('pathlib').Path('$work/synthetic'))"
[ -f "$work/real/train.csv" ] || $py -m sepkit prepare sepkit/corpora/librispeech-mini --out "$work/real" \
    --test-speakers 20 --valid-speakers 10 > /dev/null
common="--no-test train.max_steps=20 train.max_minutes=null train.progress_bar=false train.checkpoint_every_minutes=null"
rm -rf "$work/run-synthetic" "$work/run-real"
$py -m sepkit train recipes/demo-synthetic.yaml --run-dir "$work/run-synthetic" $common \
    data.root="$work/synthetic" > "$work/synthetic.log" 2>&1
$py -m sepkit train recipes/demo.yaml --run-dir "$work/run-real" $common data.root="$work/real" \
    data.mixtures_per_epoch=40 > "$work/real.log" 2>&1
$py - "$work" <<'PY'
import hashlib, sys, torch
from pathlib import Path
for name in ("synthetic", "real"):
    ckpt = sorted((Path(sys.argv[1]) / f"run-{name}" / "checkpoints").glob("ckpt-*.pt"))[-1]
    state = torch.load(ckpt, weights_only=True)["model_state"]
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode()); digest.update(state[key].numpy().tobytes())
    print(f"{name:9s} {ckpt.name} {digest.hexdigest()[:16]}")
PY
