"""Adaptive depth in the recycled upper stack (issue 22): documents run fewer of the layers k..L-1.

Modules: segments (the upper stack one layer at a time, a view of the task model), exits (a pooled
classifier after each upper layer, and DACT's halting units; `exits.safetensors`), rules (when a
document stops: dact, patience, entropy), losses (what trains the exits), threshold (the rule's
threshold chosen on validation for an accuracy budget), runner (PyTorch inference with batch
compaction), onnx (per-layer graphs with their exits, and the ONNX Runtime runner); ode (S Euler
steps of a parameter-shared upper stack: h <- h + beta (f(h) - h), the step sizes set on validation,
the "ode" record of a task model), distill (one shared block distilled from the cache to reproduce
an encoder's upper stack, then tuned for the task), limits (the torch-free checks of --steps). See
docs/depth.md.
"""
