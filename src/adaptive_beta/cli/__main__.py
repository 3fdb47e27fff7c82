"""`python -m adaptive_beta.cli ...` is `abeta ...`."""

from adaptive_beta.cli.main import main

main()
