"""Training: one loop for every detector (``engine.py``), its settings (``config.py``),
resumable state, SVM batteries. Modules are imported by their own path."""
