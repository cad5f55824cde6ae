"""botcore's chat plugin."""
