"""The kinds of task a task model (and its exported graph) can be: one home for their names.

    from erpack.tasks import TOKEN_TASK, per_token
    per_token(graph_info)   # True when the graph outputs logits per token, (B, T, C)

Torch-free: the deploy runtime and `erpack predict` read it without the training stack.
"""

from __future__ import annotations

TOKEN_TASK = "token-classification"  # a label per word (erpack.train.word_labels); logits (B, T, C)


def per_token(info: dict) -> bool:
    """Does the task model or graph (its record or metadata) output logits per token, (B, T, C)?"""
    return info.get("task") == TOKEN_TASK
