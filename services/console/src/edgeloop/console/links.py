"""Deep links to the tools beside the console, when their addresses are configured."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Links:
    """Base URLs of MLflow, Ray's dashboard, Jaeger and Grafana ('' = not configured)."""

    mlflow: str = ""
    ray: str = ""
    jaeger: str = ""
    grafana: str = ""

    def mlflow_run(self, experiment_id: str, run_id: str) -> str:
        if not self.mlflow or not run_id:
            return ""
        return f"{self.mlflow.rstrip('/')}/#/experiments/{experiment_id or '0'}/runs/{run_id}"

    def mlflow_model(self, model: str, version: str) -> str:
        if not self.mlflow:
            return ""
        return f"{self.mlflow.rstrip('/')}/#/models/{model}/versions/{version}"

    def jaeger_trace(self, trace_id: str) -> str:
        return f"{self.jaeger.rstrip('/')}/trace/{trace_id}" if self.jaeger and trace_id else ""

    def grafana_dashboard(self, uid: str) -> str:
        return f"{self.grafana.rstrip('/')}/d/{uid}" if self.grafana else ""
