"""Training data: the procedural Moving Digits set and a folder of the user's own videos."""
from models.data.moving_digits import MovingDigits, render_clip, sample_scene  # noqa: F401
