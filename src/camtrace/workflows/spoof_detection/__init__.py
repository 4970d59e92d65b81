"""The ``spoof_detection:`` section of an experiment: a learned detector of counter-forensic
attacks trained on camtrace's own attacks, measured on attacks it never saw and on clean and
re-saved photos."""
