"""Store backends (see botcore.store.Store): memory, SQLite; each passes tests/test_store_contract.py."""
