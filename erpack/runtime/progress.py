"""Steps: one progress bar over a stage's named steps (export, bench's preparation).

The bar comes from the `progress(total=, desc=, unit=)` factory every library call takes (the CLI
passes tqdm; tests pass a recorder). `start(name)` ends the step before it and shows `name` beside
the stage (`export: quantize (dynamic)`); `done(message)` ends it and hands the message to `log`;
`close()` ends the last step and the bar, and is safe to call twice. Without `progress` nothing is
drawn and only `log` hears the messages. No torch here: the runtime's low floor.
"""

from __future__ import annotations

from collections.abc import Callable


class Steps:
    """A bar of `total` steps named `desc` (None without `progress`), the step running now, and the log."""

    def __init__(self, progress: Callable | None, total: int, desc: str = "steps",
                 log: Callable[[str], None] | None = None):
        self.bar = progress(total=total, desc=desc, unit="step") if progress else None
        self.desc = desc
        self.log = log
        self.running = False

    def total(self, n: int) -> None:
        """Set the number of steps (known once the first step has run)."""
        if self.bar is not None:
            self.bar.total = n

    def add(self, n: int) -> None:
        """Add `n` steps to the total (e.g. one per path once the paths are known)."""
        if self.bar is not None:
            self.bar.total += n

    def start(self, name: str) -> None:
        """End the running step, if any, and show `name` as the one running now."""
        self.done()
        if self.bar is not None:
            self.bar.set_description(f"{self.desc}: {name}")
        self.running = True

    def done(self, message: str | None = None) -> None:
        """End the running step (counted once), and log `message`."""
        if self.running and self.bar is not None:
            self.bar.update(1)
        self.running = False
        if message and self.log is not None:
            self.log(message)

    def close(self) -> None:
        """End the last step and the bar (its line ends, so what is printed next starts its own)."""
        self.done()
        if self.bar is not None:
            self.bar.close()
            self.bar = None
