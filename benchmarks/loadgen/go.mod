module serin.dev/benchmarks/loadgen

go 1.26
