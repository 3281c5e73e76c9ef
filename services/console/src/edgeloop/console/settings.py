"""The console's configuration (``EDGELOOP_*`` variables)."""

from __future__ import annotations

from edgeloop.platform import ServiceSettings
from pydantic import Field

DEFAULT_PORT = 8080


class Settings(ServiceSettings):
    """Configuration of the web console."""

    listen_addr: str = Field(default=f"127.0.0.1:{DEFAULT_PORT}",
                             description="host:port the HTTP server binds")
    registry_addr: str = Field(default="127.0.0.1:50051", description="registry host:port")
    features_addr: str = Field(default="127.0.0.1:50052", description="features host:port")
    trainer_addr: str = Field(default="127.0.0.1:50053", description="trainer host:port; "
                              "empty hides sweeps")
    read_token: str = Field(min_length=1, description="registry read token: every page reads "
                            "with it")
    admin_token: str = Field(min_length=16, description="registry admin token: a login "
                             "password, and the token writes are made with after such a login "
                             "(operators may log in with their own registry token instead)")
    session_secret: str = Field(default="", description="key that signs session cookies; "
                                "empty: a random key per process (logins end on restart)")
    webhook_secret: str = Field(default="", description="bearer secret Grafana's operator "
                                "alerts carry to POST /hooks/grafana (contact point "
                                "edgeloop-operators); empty: the console takes no alerts")
    alerts_file: str = Field(default="", description="file where the firing operators' alerts "
                             "are kept, so a restarted console shows them at once (JSON, "
                             "replaced after each notification); empty: in memory only, back "
                             "with Grafana's next repeat")
    trace_dir: str = Field(default="", description="folder of the services' span files "
                           "(*.jsonl, EDGELOOP_TRACE_FILE of each service) for a frame's span tree")
    spool_dirs: str = Field(default="", description="comma-separated spool folders of the "
                            "gateways (EDGELOOP_SPOOL_DIR of each): the fleet page shows each "
                            "one's backlog and whether it records; empty hides the section")
    mlflow_ui_url: str = Field(default="", description="MLflow UI base URL for deep links to runs")
    ray_dashboard_url: str = Field(default="", description="Ray dashboard URL for links")
    jaeger_url: str = Field(default="", description="Jaeger UI base URL for links to traces")
    grafana_url: str = Field(default="", description="Grafana base URL for links to dashboards")
    refresh_s: float = Field(default=5.0, gt=0, le=3600, description="seconds between the "
                             "pages' live updates")
    timeline_minutes: float = Field(default=30.0, gt=0, description="how far back the drift "
                                    "timeline reaches")
    timeline_points: int = Field(default=3000, ge=10, le=50000, description="most observations "
                                 "the drift timeline plots")

    @property
    def spool_folders(self) -> list[str]:
        """``spool_dirs`` as a list."""
        return [part.strip() for part in self.spool_dirs.split(",") if part.strip()]
