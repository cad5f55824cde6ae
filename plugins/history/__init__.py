"""botcore's history plugin."""
