"""What every stage needs, on a low floor: each thing once, imported by the stages, never copied.

    device.py    resolve_device("auto") -> torch.device (CUDA when present)
    lower.py     running the lower stack over tokenized documents, in PyTorch or an ONNX session:
                 per document (tokens, hidden) float32 in input order; wants_token_types
    prefetch.py  Prefetcher: batches made in a background thread, through a bounded queue
    timing.py    interleaved medians, Stopwatch sections, summaries, page-cache eviction,
                 describe_machine
    progress.py  Steps: one progress bar over a stage's named steps (export, bench's preparation)

Tokenizing lives in erpack.tokens, padding in erpack.batching (pad_token_ids, pad_arrays,
mask_from_lengths). These modules import only erpack.errors, erpack.batching and erpack.tokens:
nothing from train, prune, export, bench or cli. torch is imported where a function needs it, so
`import erpack.runtime.prefetch` or `.timing` works without it.
"""
