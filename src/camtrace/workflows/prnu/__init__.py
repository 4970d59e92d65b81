"""PRNU device fingerprints in workflows: enrolment and matching on files (``files.py``),
shared among processes (``batch.py``), and the ``prnu:`` section of an experiment (``run.py``,
``report.py``, ``section.py``)."""
