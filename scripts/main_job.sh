#!/usr/bin/env bash
# The main job (README: `make demo`) on built-in synthetic data, both papers, the way users
# work on KITTI, Cityscapes and CamVid:
# SUW-Learn: generate drives in the KITTI raw layout -> convert to TFRecords -> weak labels
# from the (stand-in) segmenter masks -> train SUW-Learn (S+U+W) and an S-only baseline ->
# evaluate with the Eigen protocol next to a constant-depth baseline, with a reading of the
# table -> export SavedModel + TFLite -> predict on held-out frames;
# Hoyer et al.: Cityscapes-sequence and CamVid layouts -> self-supervised depth (SDE) on the
# sequences -> its disparity on the CamVid training images + a DepthMix figure -> segmentation
# with 50 labels, baseline vs DT+XD (SDE transfer + mean teacher + DepthMix) -> depth and mIoU
# tables -> segmentation SavedModel -> overlays of the held-out drive;
# then the time per stage and where everything is.
#
# Environment knobs: DEMO_WORKDIR (default workdir), DEMO_STEPS (SUW training steps per run),
# DEMO_SDE_STEPS and DEMO_SEG_STEPS (the Hoyer runs' steps).
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
sde_steps=${DEMO_SDE_STEPS:-150}
seg_steps=${DEMO_SEG_STEPS:-150}
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

stage "1/12 drives" "synthetic drives in the KITTI raw layout -> $data/kitti_raw"
if [[ ! -f $data/kitti_raw/splits/eigen_test_files.txt ]]; then
  $py -m tools.make_synthetic --layout=kitti --output_dir="$data/kitti_raw" --num_drives=6 \
      --frames_per_drive=24 --height=64 --width=208 --lidar_rows=32 --num_workers=2
fi

stage "2/12 convert" "TFRecords (depth-benchmark PNGs + segmenter outputs) -> $data/kitti_converted"
$py -m tools.convert_kitti --input_dir="$data/kitti_raw" --output_dir="$data/kitti_converted" \
    --splits=train,val,test --num_workers=2 \
    --semantic_dir="$data/kitti_raw/predictions/semantic" \
    --instance_dir="$data/kitti_raw/predictions/instances"

stage "3/12 weak labels" "ordinal patch pairs from the semantic masks -> $data/kitti_records"
if [[ ! -f $data/kitti_records/manifest.json ]]; then
  $py -m tools.generate_weak_labels --input="$data/kitti_converted/*.tfrecord" \
      --output_dir="$data/kitti_records"
fi

stage "4/12 train" "SUW-Learn (S+U+W) and the S-only baseline, $steps steps each"
common=(--set "data.train_pattern=$data/kitti_records/train-*.tfrecord"
        --set "data.eval_pattern=$data/kitti_records/val-*.tfrecord" --set "train.steps=$steps"
        --set "train.eval_every=$steps" --set "data.image_size=[64,208]"
        --set "optim.learning_rate=1e-3"
        --set "optim.schedule=constant")
$py -m tools.train --config=suw/synthetic_suw --workdir="$work/suw" "${common[@]}"
$py -m tools.train --config=suw/synthetic_s --workdir="$work/s_only" "${common[@]}"

stage "5/12 evaluate" "held-out test drive, KITTI Eigen protocol, with a reading of the table"
# --tie: three 200-step runs of one config here differ by up to 8-18 % in AbsRel, 9-13 % in
# RMSE and 0.06-0.08 in d1 (docs/suw_study.md, "The demo"): the reading calls smaller gaps ties.
$py -m tools.evaluate --workdir="$work/suw" --split="$data/kitti_records/test-*.tfrecord" \
    --baselines --compare="$work/s_only" --out="$work/eval_results.json" --tie=0.15

stage "6/12 export" "SavedModel + TFLite -> $work/export"
$py -m tools.export --workdir="$work/suw" --output_dir="$work/export" --overwrite

stage "7/12 predict" "the held-out drive's frames -> $work/predictions"
test_drive=$(head -n 1 "$data/kitti_raw/splits/eigen_test_files.txt" | cut -d' ' -f1)
$py -m tools.predict --model="$work/export" --input="$data/kitti_raw/$test_drive/image_02/data" \
    --output_dir="$work/predictions"

# ---- Hoyer et al.: SDE on Cityscapes-layout sequences -> segmentation on CamVid-layout drives
# with 50 labels (the paper's cross-dataset setting, Table S2), baseline vs DT+XD (transfer +
# mean teacher + DepthMix). The configs' paths are workdir/...; the demo passes its own.
stage "8/12 drives (Hoyer)" "Cityscapes-sequence and CamVid layouts -> $data/cityscapes_sequence, $data/camvid_records"
# (The converters resume shard by shard; a generator killed mid-way: delete its folder.)
if [[ ! -d $data/cityscapes_raw/camera/test ]]; then
  $py -m tools.make_synthetic --layout=cityscapes --output_dir="$data/cityscapes_raw" \
      --num_drives=6 --frames_per_drive=24 --height=64 --width=128 --num_workers=2
fi
$py -m tools.convert_cityscapes --input_dir="$data/cityscapes_raw" \
    --output_dir="$data/cityscapes_sequence" --mode=sequence --height=64 --width=128
if [[ ! -f $data/camvid_raw/test.txt ]]; then
  $py -m tools.make_synthetic --layout=camvid --output_dir="$data/camvid_raw" --num_drives=5 \
      --frames_per_drive=24 --height=72 --width=96 --num_workers=2
fi
$py -m tools.convert_camvid --input_dir="$data/camvid_raw" --output_dir="$data/camvid_records" \
    --height=64 --width=84 --num_shards=2

stage "9/12 SDE" "self-supervised depth (ResNet-18 depth + pose nets), $sde_steps steps -> $work/sde_cs"
$py -m tools.train --config=hoyer/synthetic_cityscapes_sde --workdir="$work/sde_cs" \
    --set "data.train_pattern=$data/cityscapes_sequence/train-*.tfrecord" \
    --set "data.eval_pattern=$data/kitti_records/val-*.tfrecord" \
    --set "train.steps=$sde_steps" --set "train.eval_every=$sde_steps"
$py -m tools.predict_pseudo_depth --input="$data/camvid_records/train-*.tfrecord" \
    --sde="$work/sde_cs" --output_dir="$data/camvid_pseudo_depth" \
    --figure="$work/depthmix.png"

stage "10/12 segmentation" "50 labels: baseline and DT+XD, $seg_steps steps each"
seg_common=(--set "data.eval_pattern=$data/camvid_records/val-*.tfrecord"
            --set "train.steps=$seg_steps" --set "train.eval_every=$seg_steps"
            --set "optim.decay_steps=[$((seg_steps * 3 / 4))]")
$py -m tools.train --config=hoyer/synthetic_camvid_seg --workdir="$work/seg_baseline" \
    --set "data.train_pattern=$data/camvid_records/train-*.tfrecord" "${seg_common[@]}"
$py -m tools.train --config=hoyer/synthetic_camvid_dt_depthmix --workdir="$work/seg_dt_xd" \
    --set "data.train_pattern=$data/camvid_pseudo_depth/train-*.tfrecord" \
    --set "seg.init_from=$work/sde_cs" "${seg_common[@]}"

stage "11/12 evaluate (Hoyer)" "SDE depth on the held-out KITTI-layout drive; mIoU on the CamVid-layout test drive"
$py -m tools.evaluate --workdir="$work/sde_cs" --split="$data/kitti_records/test-*.tfrecord" \
    --baselines --out="$work/sde_eval_results.json"
$py -m tools.evaluate --workdir="$work/seg_dt_xd" --split="$data/camvid_records/test-*.tfrecord" \
    --compare="$work/seg_baseline" --checkpoint=latest --out="$work/seg_eval_results.json"

stage "12/12 export + predict (Hoyer)" "segmentation SavedModel + overlays of the CamVid-layout test drive"
$py -m tools.export --workdir="$work/seg_dt_xd" --output_dir="$work/seg_export" --overwrite
$py -m tools.predict --model="$work/seg_export" --input="$data/camvid_raw/test" \
    --output_dir="$work/seg_predictions"
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
printf '\nSegmentation with 50 labels (from %s):\n' "$work/seg_eval_results.json"
$py -c 'import json, sys
report = json.load(open(sys.argv[1]))["segmentation"]["results"]
names = {"synthetic_camvid_dt_depthmix": "DT+XD (SDE transfer + DepthMix)",
         "synthetic_camvid_seg": "baseline (random init)"}
for run, m in report.items():
    print("  {:34s} mIoU {:.3f}  pixel accuracy {:.3f}".format(
        names.get(run, run), m["miou"], m["pixel_accuracy"]))
sde = json.load(open(sys.argv[2]))["results"]
for run, m in sde.items():
    print("  SDE depth, {:23s} AbsRel {:.3f}  d1 {:.3f} (median-scaled)".format(
        run, m["abs_rel"], m["a1"]))' \
    "$work/seg_eval_results.json" "$work/sde_eval_results.json"
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

Hoyer et al. (self-supervised depth -> segmentation with 50 labels):
  SDE run: $work/sde_cs (depth table: $work/sde_eval_results.json)
  segmentation runs: $work/seg_baseline, $work/seg_dt_xd (mIoU + per-class IoU:
      $work/seg_eval_results.json)
  DepthMix figure (two CamVid-layout images mixed by their SDE depth): $work/depthmix.png
  segmentation SavedModel: $work/seg_export; overlays of the test drive: $work/seg_predictions
  data: $data/cityscapes_sequence, $data/camvid_records, $data/camvid_pseudo_depth
MSG
