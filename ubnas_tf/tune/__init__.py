"""Tuning the search's and the retraining's hyperparameters with keras-tuner (above both).

    run.py      the tuner: one trial = a search, then a retraining, scored on validation
    space.py    the hyperparameters it explores (configs/tune.yaml)
    data.py     the validation split held out of the training data
    reports.py  trials.md, trials.json, best.json
"""
from ubnas_tf.tune.run import OBJECTIVE, NASTuner, run_tune  # noqa: F401

__all__ = ["run_tune", "NASTuner", "OBJECTIVE"]
