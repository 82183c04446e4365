"""One module per study kind: its defaults, allowed values, tables, runner and report section."""
