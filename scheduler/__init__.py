"""The in-process scheduler: container backend, leader lease, periodic jobs.

May import ``portal`` models; ``portal`` never imports this package.
"""
