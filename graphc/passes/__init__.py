"""Passes over the IR: autodiff, simplification, fusion, memory planning."""
