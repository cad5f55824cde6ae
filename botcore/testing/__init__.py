"""The testing and developer kit: fake Telegram Bot API and OpenAI servers over real HTTP, pytest
fixtures, and the developer's commands (`botcore console`, `new-plugin`, `run --reload`), which
the command line imports only when they run."""
