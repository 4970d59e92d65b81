"""Workflows: everything that strings the parts together (docs/architecture.md).

The experiment runner (config -> run folder), the attack plan/run/report, the whole-image
spoof, evaluate, and report writing. Above ``evaluation/``, ``attacks/`` and ``training/``;
``cli.py`` is a thin layer over it.
"""
