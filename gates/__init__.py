"""Pure gate logic and statistics: no argv, no sys.exit, no global state (DESIGN §2)."""
