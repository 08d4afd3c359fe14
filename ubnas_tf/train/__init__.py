"""Stage 4, retraining: a genotype's network (or a baseline) trained, evaluated and saved."""
from ubnas_tf.train.run import (Trainer, evaluate, evaluate_file, learning_rate_schedule,  # noqa
                                load_model, make_optimizer, run_training)

__all__ = ["Trainer", "run_training", "evaluate", "evaluate_file", "load_model",
           "make_optimizer", "learning_rate_schedule"]
