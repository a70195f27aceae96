"""The performance job: does the model fit, what vLLM is started with, and what it serves (throughput,
latency, queueing) — projected, calibrated on published measurements and refitted from benches."""
