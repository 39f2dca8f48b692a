"""nsm's benchmarks: a package, so that its helpers import as bench.timing, bench.layers."""
