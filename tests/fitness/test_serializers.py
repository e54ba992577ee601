"""StrictFieldsMixin (fitness/serializers.py): the APIs' 400 for fields they do not know."""

from rest_framework import serializers

from fitness.serializers import StrictFieldsMixin


class Reading(StrictFieldsMixin, serializers.Serializer):
    temperature_c = serializers.FloatField(max_value=150)
    note = serializers.CharField(required=False)


def errors(data, **kwargs) -> dict | list:
    serializer = Reading(data=data, **kwargs)
    assert not serializer.is_valid()
    return serializer.errors


def test_unknown_fields_are_named_each_with_its_error():
    assert errors({"temperature_c": 40, "lables": 1, "colour": "red"}) == {
        "colour": ["Unknown field."], "lables": ["Unknown field."],
    }


def test_the_errors_of_the_known_fields_come_with_them():
    found = errors({"temperature_c": 400, "colour": "red"})
    assert found["colour"] == ["Unknown field."] and "less than or equal to 150" in found["temperature_c"][0]


def test_each_item_of_a_list_is_checked_and_known_fields_pass():
    found = errors([{"temperature_c": 40}, {"temperature_c": 41, "humidity": 3}], many=True)
    assert found[1] == {"humidity": ["Unknown field."]}  # DRF 3.16 lists the items, 3.18 maps their index
    assert Reading(data={"temperature_c": 40, "note": "ok"}).is_valid()


def test_a_body_that_is_no_object_gets_drfs_own_answer():
    assert "Expected a dictionary" in str(errors(["temperature_c"]))
