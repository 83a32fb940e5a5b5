"""From MLflow runs to the paper's tables and figures: the runs (``runs``), the statistics
(``stats``), the report object and its files (``report``), rendering to Markdown, CSV and
LaTeX (``render``), the figures (``figures``), and a whole report rebuilt from the
tracking store alone (``from_mlflow``, ``orch table``). What each protocol reports is its
own module's ``report`` (``orchestrator.protocols``)."""

from orchestrator.reports.report import Report, Table, log_on_parent, write  # noqa: F401
