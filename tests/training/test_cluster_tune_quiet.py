"""`abeta tune --ray-address ... --quiet` prints nothing of Ray Tune's own: its terminal reporter
prints the experiment's configuration table whatever `verbose` says (Ray 2.60), so
`fit_tuner` drops the driver's stdout while the search runs; with progress on it is untouched."""

from __future__ import annotations

import sys

from adaptive_beta.training.cluster_tune import fit_tuner

TABLE = "| Configuration for experiment  abeta |"


class _PrintingTuner:
    """Prints as Ray Tune's reporter does (print to the current sys.stdout) and returns a grid."""

    def fit(self):
        print(TABLE)
        print("Trial status: 3 TERMINATED")
        sys.stderr.write("a trial error is logged to stderr\n")
        return ["grid"]


def test_quiet_drops_the_reporters_output_and_keeps_the_result_and_stderr(capsys):
    assert fit_tuner(_PrintingTuner(), progress=False) == ["grid"]
    out, err = capsys.readouterr()
    assert out == "" and "trial error" in err
    print("after")  # stdout is restored once the search is over
    assert capsys.readouterr().out == "after\n"


def test_with_progress_the_reporter_prints_as_usual(capsys):
    assert fit_tuner(_PrintingTuner(), progress=True) == ["grid"]
    assert TABLE in capsys.readouterr().out
