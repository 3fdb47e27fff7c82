"""Compliance review in the browser: audit-log explorer pages (app.py), charts and the HTML report.

The service mounts `adaptive_beta.serving.compliance.app.compliance_app` under /compliance; `abeta audit report`
(src/adaptive_beta/cli/report.py) writes the periodic report (report.py).
"""
