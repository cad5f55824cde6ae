"""botcore: a plugin-based Telegram bot framework."""
