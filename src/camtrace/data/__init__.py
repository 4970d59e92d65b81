"""Datasets, simulated cameras (SimCam), manifests, splits and patches."""
