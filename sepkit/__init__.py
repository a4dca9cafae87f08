"""sepkit: train and run speech-separation models with a training loop that survives NaNs,
crashes and bad data."""

__version__ = "0.1.0"
