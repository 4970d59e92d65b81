"""The ``openset:`` section of an experiment: open-set identification calibrated and measured
on camera models held out of training."""
