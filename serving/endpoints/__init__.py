"""The service's endpoints: one module and one function `(state, request, caller) -> response` each.

`state` is the loaded `AppState` (bundle, predictor, audit log); `request` the validated body (or
query parameters); `caller` the authenticated key id. The BentoML class in `serving/service.py`
only routes, times and maps errors to HTTP statuses; everything an endpoint does is here.
"""
