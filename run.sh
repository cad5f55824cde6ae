#!/usr/bin/env bash
# Install everything and run the bot with bot.toml (TELEGRAM_BOT_TOKEN and OPENAI_API_KEY come
# from the environment or from a .env file here).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh run
exec .venv/bin/botcore run --config "${BOTCORE_CONFIG:-bot.toml}" "$@"
