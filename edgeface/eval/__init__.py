"""Accuracy protocols (LFW verification) and their metrics."""
