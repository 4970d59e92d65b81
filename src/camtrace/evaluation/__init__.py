"""Evaluation: metrics, plots and the run folder (metrics.json, report.html, config.yaml)."""
