"""Slurm clusters as the portal sees them (docs/slurm.md). The client of a cluster's
slurmrestd is the scheduler's (``app.extensions["hourglass.slurm"]``, a callable
``client_for(cluster)``); it raises ``SlurmError`` with a sentence for the miner."""


class SlurmError(Exception):
    """slurmrestd could not be reached, refused us, or answered with Slurm's errors."""
