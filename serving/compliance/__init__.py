"""Compliance review in the browser: audit-log explorer pages (app.py), charts and the HTML report.

The service mounts `serving.compliance.app.compliance_app` under /compliance; `abeta audit report`
(serving/cmd_report.py) writes the periodic report (report.py).
"""
