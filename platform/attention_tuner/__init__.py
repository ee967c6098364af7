"""attention_tuner: the platform (demonstrations, training, sweeps, tracking, reports)."""
__version__ = "0.1.0"
