"""The local durable engine: replay protocol, SQLite store, HTTP API."""
