"""Integrations of arena-adapters with runners and frameworks (Isaac Lab Arena, ...).

Each module here is imported on its own, only by the runner that needs it; this package imports nothing.
"""
