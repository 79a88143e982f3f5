"""The trainer's one error type for a run that cannot go on, in its own module so that code the trainer calls
(trainer/init_from.py, trainer/scst.py) raises the same class that `python -m trainer.train` catches, even
when train.py runs as __main__."""


class TrainingError(RuntimeError):
    """The run cannot go on; the message says why and what to do."""
