"""Adaptive depth in the recycled upper stack (issue 22): documents run fewer of the layers k..L-1.

Modules: segments (the upper stack one layer at a time, a view of the task model), exits (a pooled
classifier after each upper layer, and DACT's halting units; `exits.safetensors`), rules (when a
document stops: dact, patience, entropy), losses (what trains the exits), threshold (the rule's
threshold chosen on validation for an accuracy budget), runner (PyTorch inference with batch
compaction), onnx (per-layer graphs with their exits, and the ONNX Runtime runner). See docs/depth.md.
"""
