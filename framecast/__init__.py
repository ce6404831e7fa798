"""The `framecast` command: a thin dispatcher over the services' own entry points."""
