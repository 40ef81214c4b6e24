"""The servers the benchmarks run: one hello-world HTTP app per kind of server (see bench/)."""
