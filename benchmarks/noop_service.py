"""A no-op BentoML service: the floor the prediction service's latency is compared with.

Same BentoML version, worker count and traffic settings as `adaptive_beta.serving.service:AdaptiveBeta`
(ABETA_WORKERS, ABETA_MAX_CONCURRENCY, ABETA_TIMEOUT_S), and the same request body is posted to
it: the JSON is decoded into a dict (no schema) and a constant is returned.  So the difference
between the two is the service's own work (validation, features, ONNX, Shapley, audit).

    bentoml serve benchmarks.noop_service:Noop --port 3001
"""

from __future__ import annotations

import os

import bentoml

WORKERS = max(1, int(os.environ.get("ABETA_WORKERS", "1")))
MAX_CONCURRENCY = int(os.environ.get("ABETA_MAX_CONCURRENCY", "16"))
TIMEOUT_S = float(os.environ.get("ABETA_TIMEOUT_S", "30"))


@bentoml.service(
    name="abeta_noop", workers=WORKERS, traffic={"timeout": TIMEOUT_S, "max_concurrency": MAX_CONCURRENCY}
)
class Noop:
    @bentoml.api(route="/forecast")
    def forecast(
        self,
        assets: list | None = None,
        series: dict | None = None,
        symbols: list | None = None,
        universe: bool = False,
    ) -> dict:
        """Accept a /forecast body (stateless `assets`, or stored-state `symbols` / `universe`), do
        nothing with it, answer a constant."""
        return {"request_id": "noop", "n_assets": len(assets or symbols or [])}
