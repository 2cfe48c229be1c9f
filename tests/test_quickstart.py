"""The README's quickstart, for real: the shipped suite on digits, on the CPU.

One seed instead of two keeps it near a minute; everything else is the shipped suite.
"""

from __future__ import annotations

import pytest

from crlbench.cli import main
from crlbench.store import scan


@pytest.mark.slow
def test_quickstart_simclr_beats_raw_and_tables_render(tmp_path, capsys):
    store = tmp_path / "results"
    assert main(["run", "suite=quickstart", "seeds=[0]", f"results.dir={store}"]) == 0
    assert "simclr" in capsys.readouterr().out
    metrics = {r["method"]: r["metrics"] for r in scan(store).records}
    assert set(metrics) == {"raw", "simclr"}
    # k-means ACC is left out: one seed's clustering can merge two digits, and whether it does
    # differs between CPUs (the README's two seeds average 89.9 on one AMD EPYC; seed 0 gave
    # 78.3 on an AVX2-only one, with NMI and ARI still above raw's)
    for name in ("knn5_acc", "knn200_acc", "linear_acc", "kmeans_nmi", "kmeans_ari"):
        assert metrics["simclr"][name] > metrics["raw"][name], name

    headline = "metric=knn5_acc,knn200_acc,linear_acc,kmeans_acc,kmeans_nmi,kmeans_ari"
    assert main(["table", "suite=quickstart", headline, "--format", "latex",
                 f"results.dir={store}"]) == 0
    latex = capsys.readouterr().out
    simclr_row = next(line for line in latex.splitlines() if line.startswith("simclr"))
    columns = headline.split("=")[1].split(",")
    best = sum(metrics["simclr"][m] > metrics["raw"][m] for m in columns)
    assert best >= 5 and simclr_row.count("\\textbf") == best  # bold where it is best
