"""File-level steps behind each CLI command (read inputs, call the library, write outputs
atomically). Each is a plain function so notebooks and tests can call it directly."""
