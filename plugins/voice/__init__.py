"""botcore's voice plugin."""
