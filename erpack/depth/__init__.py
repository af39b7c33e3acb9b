"""Adaptive depth in the recycled upper stack: fewer upper-layer evaluations per document.

Modules: ode (S Euler steps of a parameter-shared upper stack: h <- h + beta (f(h) - h), the step
sizes set on validation, the "ode" record of a task model), distill (one shared block distilled from
the cache to reproduce an encoder's upper stack, then tuned for the task).
"""
