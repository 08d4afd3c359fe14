"""Stage 4, retraining: a genotype's network (or a baseline) trained, evaluated and saved."""
from ubnas_tf.train.evaluate import evaluate, evaluate_file, load_model
from ubnas_tf.train.optimizer import learning_rate_schedule, make_optimizer
from ubnas_tf.train.run import run_training
from ubnas_tf.train.trainer import Trainer

__all__ = ["Trainer", "run_training", "evaluate", "evaluate_file", "load_model",
           "make_optimizer", "learning_rate_schedule"]
