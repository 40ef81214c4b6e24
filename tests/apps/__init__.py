"""Programs that tests run as real primaries and workers: real modules, linted and type-checked."""
