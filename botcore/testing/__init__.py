"""The testing kit: fake Telegram Bot API and OpenAI servers over real HTTP, and pytest fixtures."""
