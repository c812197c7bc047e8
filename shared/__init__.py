"""Utilities every task shares: augmentation, regularization, evaluation, tracking, data and plots."""
