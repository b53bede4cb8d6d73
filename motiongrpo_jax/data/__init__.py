"""Data: sequence records, synthetic motion, importers and the input pipeline."""
