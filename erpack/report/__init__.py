"""Storage-cost reports (`erpack report`): what a corpus's cache costs per codec, and when it pays.

    from erpack.report import ReportConfig, build_report, write_report
    rep = build_report(ReportConfig(caches=["caches/bbc-int8z"], documents=100_000_000, profile="bbc"))
    paths = write_report(rep, "report.html")   # report.html (self-contained), report.md, report.json

Modules: project (the arithmetic: size fit, projection, cost, break-even), measure (caches,
re-encoded samples, length profiles, timed samples), build (`build_report` and the `Report` it returns), plots (matplotlib
figures as base64 PNG), render (Markdown and HTML).
"""

from erpack.report.build import Report, ReportConfig, build_report
from erpack.report.render import write_report

__all__ = ["Report", "ReportConfig", "build_report", "write_report"]
