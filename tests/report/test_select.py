"""One selection and one order of records for every view of them: the table, the provenance
and conventions lines, the mixed-configuration warning and the figures' lines agree on which
records they speak of and in which order."""

from __future__ import annotations

from test_table import record

from crlbench.report import mixed_configs, summarize
from crlbench.report.provenance import conventions_line, provenance
from crlbench.report.records import ordered_labels
from crlbench.report.select import order_key, select


def _made(rec: dict, config_id: str = "c1") -> dict:
    return {**rec, "config_id": config_id, "created": "2026-12-01T10:00:00+00:00",
            "environment": {"device": "cpu", "torch": "2.5", "crlbench": "0.1.0"},
            "conventions": {"knn": "cosine"}}


def test_the_mixed_configuration_warning_speaks_only_of_the_selected_records():
    records = [_made(record("simclr", "digits", 0, {"knn5_acc": 0.9})),
               _made(record("simclr", "mnist", 0, {"knn5_acc": 0.9}), "c1"),
               _made(record("simclr", "mnist", 1, {"knn5_acc": 0.9}), "c2")]
    assert mixed_configs(records, datasets=["digits"]) == []
    (warning,) = mixed_configs(records)
    assert warning.startswith("simclr on mnist mixes 2 configurations")


def test_a_variant_label_filter_keeps_the_provenance_and_conventions_lines():
    records = [_made(record("cc", "mnist", 0, {"head_acc": 0.5}, variant={"k": 5})),
               _made(record("cc", "mnist", 0, {"head_acc": 0.6}, variant={"k": 10}))]
    line = provenance(records, methods=["cc (k=5)"])
    assert line is not None and line.startswith("From 1 records")
    assert conventions_line(records, methods=["cc (k=5)"]) == "Conventions: knn: cosine."
    assert provenance(records, methods=["cc"]).startswith("From 2 records")


def test_a_sweep_orders_table_rows_and_figure_lines_alike_by_value():
    key = "method_cfg.simclr.temperature"
    records = [record("simclr", "mnist", 0, {"knn5_acc": t}, variant={key: t})
               for t in (0.5, 0.25, 0.1)]
    rows = list(summarize(records)["method"].astype(str))
    assert rows == ["simclr (temperature=0.1)", "simclr (temperature=0.25)",
                    "simclr (temperature=0.5)"]
    assert ordered_labels(records) == rows


def test_select_and_order_key_put_the_floor_last_and_numbers_as_numbers():
    records = [record("raw", "mnist", 0, {}), record("cc", "mnist", 0, {}, variant={"k": 10}),
               record("cc", "mnist", 0, {}, variant={"k": 5}), record("byol", "cifar10", 0, {})]
    chosen = select(records, datasets=["mnist"], methods=["cc", "raw"])
    assert [r["variant"].get("k") for r in sorted(chosen, key=order_key)] == [5, 10, None]
