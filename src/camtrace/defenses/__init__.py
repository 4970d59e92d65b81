"""Training-time defences (Zhao): to come (issue 14). Above ``training/`` and ``attacks/``."""
