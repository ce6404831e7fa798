"""framecast benchmarks: `make bench` (or `python -m bench`). Figures are ratios measured side by
side in one run, medians over repeats; nothing here passes or fails."""
