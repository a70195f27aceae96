"""The data job: the deployment spec, the catalog of offers and prices, and resolving one into the other.

The catalog's files (offers, prices, GPUs, models, calibration, published benchmarks, ...) sit beside these
modules; every figure in them carries its source and date."""

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
