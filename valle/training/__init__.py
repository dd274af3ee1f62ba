"""Training: optimizer and schedule (optim), loop (trainer)."""
