"""devhost: a local, single-machine host for the app's ``function_app.app`` (development only)."""
