"""botcore's image plugin."""
