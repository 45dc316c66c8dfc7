#!/usr/bin/env bash
# The main job (README: `make demo`) on built-in synthetic data, the way users work on KITTI:
# generate drives in the KITTI raw layout -> convert to TFRecords -> weak labels from the
# (stand-in) segmenter masks -> train SUW-Learn (S+U+W) and an S-only baseline -> evaluate
# with the Eigen protocol next to a constant-depth baseline, with a reading of the table ->
# export SavedModel + TFLite -> predict on held-out frames -> time per stage and where
# everything is.
#
# Environment knobs: DEMO_WORKDIR (default workdir), DEMO_STEPS (training steps per run).
#
# CPU-sized choices (docs/suw_study.md, "The demo"): the drives are rendered at the training
# size, 64x208, with 32 LiDAR rows (every other image row, KITTI-like sparsity), so training
# never resizes the sparse depth; both runs take Adam 1e-3, constant, for $DEMO_STEPS steps (the
# paper's 1e-4 is meant for ~20k steps). A GPU user renders 128x416 (or converts real KITTI)
# and drops the size and learning-rate overrides below.
# Re-running continues where it stopped (converters and training resume).
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2
py=.venv/bin/python
work=${DEMO_WORKDIR:-workdir}
data=$work/data
steps=${DEMO_STEPS:-200}
start=$SECONDS
stage_names=()
stage_seconds=()
current=""
stage_start=$SECONDS
end_stage() {
  if [[ -n $current ]]; then
    stage_names+=("$current")
    stage_seconds+=($((SECONDS - stage_start)))
    printf '=== %s took %d s\n' "$current" $((SECONDS - stage_start))
  fi
  current=""
}
stage() {  # stage <short name> <what it does>
  end_stage
  current=$1
  stage_start=$SECONDS
  printf '\n=== [%4d s] %s: %s\n' $((SECONDS - start)) "$1" "$2"
}

stage "1/7 drives" "synthetic drives in the KITTI raw layout -> $data/kitti_raw"
if [[ ! -f $data/kitti_raw/splits/eigen_test_files.txt ]]; then
  $py -m tools.make_synthetic --layout=kitti --output_dir="$data/kitti_raw" --num_drives=6 \
      --frames_per_drive=24 --height=64 --width=208 --lidar_rows=32 --num_workers=2
fi

stage "2/7 convert" "TFRecords (depth-benchmark PNGs + segmenter outputs) -> $data/kitti_converted"
$py -m tools.convert_kitti --input_dir="$data/kitti_raw" --output_dir="$data/kitti_converted" \
    --splits=train,val,test --num_workers=2 \
    --semantic_dir="$data/kitti_raw/predictions/semantic" \
    --instance_dir="$data/kitti_raw/predictions/instances"

stage "3/7 weak labels" "ordinal patch pairs from the semantic masks -> $data/kitti_records"
if [[ ! -f $data/kitti_records/manifest.json ]]; then
  $py -m tools.generate_weak_labels --input="$data/kitti_converted/*.tfrecord" \
      --output_dir="$data/kitti_records"
fi

stage "4/7 train" "SUW-Learn (S+U+W) and the S-only baseline, $steps steps each"
common=(--set "data.train_pattern=$data/kitti_records/train-*.tfrecord"
        --set "data.eval_pattern=$data/kitti_records/val-*.tfrecord" --set "train.steps=$steps"
        --set "train.eval_every=$steps" --set "data.image_size=[64,208]"
        --set "optim.learning_rate=1e-3"
        --set "optim.schedule=constant")
$py -m tools.train --config=suw/synthetic_suw --workdir="$work/suw" "${common[@]}"
$py -m tools.train --config=suw/synthetic_s --workdir="$work/s_only" "${common[@]}"

stage "5/7 evaluate" "held-out test drive, KITTI Eigen protocol, with a reading of the table"
# --tie: three 200-step runs of one config here differ by up to 8-18 % in AbsRel, 9-13 % in
# RMSE and 0.06-0.08 in d1 (docs/suw_study.md, "The demo"): the reading calls smaller gaps ties.
$py -m tools.evaluate --workdir="$work/suw" --split="$data/kitti_records/test-*.tfrecord" \
    --baselines --compare="$work/s_only" --out="$work/eval_results.json" --tie=0.15

stage "6/7 export" "SavedModel + TFLite -> $work/export"
$py -m tools.export --workdir="$work/suw" --output_dir="$work/export" --overwrite

stage "7/7 predict" "the held-out drive's frames -> $work/predictions"
test_drive=$(head -n 1 "$data/kitti_raw/splits/eigen_test_files.txt" | cut -d' ' -f1)
$py -m tools.predict --model="$work/export" --input="$data/kitti_raw/$test_drive/image_02/data" \
    --output_dir="$work/predictions"
end_stage

printf '\n=== done in %d s\n\nTime per stage:\n' $((SECONDS - start))
for i in "${!stage_names[@]}"; do
  printf '  %-16s %5d s\n' "${stage_names[$i]}" "${stage_seconds[$i]}"
done
printf '\nReading of the evaluation (from %s):\n' "$work/eval_results.json"
$py -c 'import json, sys, textwrap
for line in json.load(open(sys.argv[1]))["reading"]:
    print(textwrap.fill(line, 100, initial_indent="  ", subsequent_indent="    "))' \
    "$work/eval_results.json"
viz=$(ls "$work"/predictions/*_viz.png | head -n 1)
cat <<MSG

Where everything is:
  metrics + reading (SUW, S only, constant median depth): $work/eval_results.json
  training runs (checkpoints, config.json, history.json, TensorBoard logs): $work/suw, $work/s_only
      view them with: .venv/bin/tensorboard --logdir $work
  SavedModel + model.tflite + metadata.json:   $work/export
      inspect with:   .venv/bin/saved_model_cli show --dir $work/export --all
  predictions of the test drive: $work/predictions/<frame>_depth.png (uint16, metres * 256)
      and <frame>_viz.png (input | depth with a colour bar in metres | uncertainty), e.g.
      $viz
  data: raw layout $data/kitti_raw, records with weak pairs $data/kitti_records
MSG
