"""The operators' commands' tables (fitness/formatting.py)."""

import pytest

from fitness.formatting import clip, table


def test_a_table_aligns_its_columns_right_aligns_counts_and_leaves_no_trailing_spaces():
    lines = table(["QUEUE", "MESSAGES", "NOTE"], [["task.submitted", 3, ""], ["mlops", 12, "late"]], right={1})
    assert lines == [
        "QUEUE           MESSAGES  NOTE",
        "task.submitted         3",
        "mlops                 12  late",
    ]


def test_a_rule_goes_under_the_header_and_an_empty_table_is_its_header():
    assert table(["ID", "EVENT TYPE"], [[7, "TaskSubmittedEvent"]], right={0}, rule=True) == [
        "ID  EVENT TYPE",
        "--  ------------------",
        " 7  TaskSubmittedEvent",
    ]
    assert table(["ID", "EVENT TYPE"], [], rule=True) == ["ID  EVENT TYPE", "--  ----------"]


def test_a_row_with_another_number_of_cells_is_a_mistake():
    with pytest.raises(ValueError):
        table(["A", "B"], [["only one"]])


def test_clip_keeps_a_cell_on_one_line():
    assert clip("a\nlong   error", 8) == "a long …"
