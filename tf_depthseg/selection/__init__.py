"""Annotation data selection (Hoyer et al. 2021, the "third way"): which unlabelled images to
label first.

    config.py    `config.selection` (task "selection"): steps, student, difficulty, diversity
    farthest.py  pooled teacher features, standardisation, biased iterative farthest point
                 (numpy)
    scores.py    berHu (the student's loss) and the difficulty score (TensorFlow)
    student.py   the depth student as a `training.loop.Task` (trained by the Trainer)
    figure.py    the contact sheet of a step's chosen images
    run.py       the growing schedule with its files and resume (`run_selection`)

`tools/select_annotations.py` runs it; docs/selection.md has the reference facts and a run.
"""
