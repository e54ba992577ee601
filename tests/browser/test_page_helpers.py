"""The browser tests' own helpers, without a browser."""

import pytest
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

from tests.browser.conftest import is_stale


class Element:
    def __init__(self, error: Exception | None):
        self.error = error

    def is_enabled(self) -> bool:
        if self.error:
            raise self.error
        return True


@pytest.mark.parametrize("error, stale", [
    (None, False),
    (StaleElementReferenceException("stale element reference"), True),
    # what ChromeDriver 156 said of a login button while the next page loaded (a clean-clone CI run)
    (WebDriverException('unknown error: unhandled inspector error: {"code":-32000,'
                        '"message":"Node with given id does not belong to the document"}'), True),
])
def test_an_element_of_a_page_being_left_is_stale(error, stale):
    assert is_stale(Element(error)) is stale


def test_another_webdriver_error_is_not_taken_for_a_new_page():
    with pytest.raises(WebDriverException):
        is_stale(Element(WebDriverException("chrome not reachable")))
