"""Experiments as a library: the grids, corpora and statistics behind the tables in docs/results/.

The scripts in tools/ (train_table.py, prune_table.py, codec_table.py, subset_corpus.py, token_table.py) parse
arguments and print; what they run lives here.

Modules: grid (results.jsonl: append, read, which runs are done; a cache encoded once under a lock),
stats (mean and sd, paired bootstrap interval, decile pooling), tags (merging configurations),
corpora (subset corpora and label files of the built-in data sets), training (the training grid and
its table; token tasks too), token_table (token tasks against the full fine-tune: result files and
their page), pruning (pruning levels and their table), codec_table (codecs on real activations),
page (a results page: command, machine, tables).
"""
