"""The reply cases of Mailgun's talon (its source distribution's tests), as JSON on stdout.

talon is the quotation stripper Mailgun runs on the mail it receives; its tests are replies
from real mail clients with the reply talon cuts from each. This script reads them without
running talon (whose machine-learning dependencies do not matter here): it imports talon's own
test module with `talon.quotations.extract_from_plain` standing in as a probe, runs every test
function, and records each `eq_(expected, extract_from_plain(text))` the test makes. Tests of
talon's internals (line markers, preprocessing) make no such call and give no case.

Usage: talon_replies.py SDIST_DIR  (the unpacked talon-1.4.4 source distribution)

Output: {"plain": [{"test", "text", "reply"}...],
         "standard_replies": [{"eml", "reply"}...],   # whole mails from real clients
         "html_replies": [{"html", "reply"}...]}      # HTML replies; compare without whitespace
"""

import json
import os
import sys
import types


class Probe:
    """What `extract_from_plain(text)` returns here: the text it was given."""

    def __init__(self, text):
        self.text = text if isinstance(text, str) else text.decode("utf8")

    def decode(self, _encoding="utf8"):
        return self


def module(name, **attributes):
    made = types.ModuleType(name)
    made.__dict__.update(attributes)
    sys.modules[name] = made
    return made


def main(sdist):
    cases = []
    current = {"test": None}

    def eq_(first, second, _message=None):
        if isinstance(second, Probe) and isinstance(first, str):
            cases.append({"test": current["test"], "text": second.text, "reply": first})
        elif isinstance(first, Probe) and isinstance(second, str):
            cases.append({"test": current["test"], "text": first.text, "reply": second})

    def unavailable(*_args, **_kwargs):
        raise NotImplementedError("a test of talon's internals")

    class Patch:
        """`mock.patch.object` as a decorator that leaves the test as it is."""

        @staticmethod
        def object(*_args, **_kwargs):
            return lambda test: test

    quotations = module(
        "talon.quotations",
        extract_from_plain=Probe,
        extract_from=lambda text, _content_type="text/plain": Probe(text),
        MAX_LINES_COUNT=1000,
        __getattr__=lambda _name: unavailable,
    )
    module("talon", init=lambda: None, quotations=quotations, __path__=[])
    module("nose", __path__=[])
    module("nose.tools", eq_=eq_, ok_=lambda *_a, **_k: None, assert_false=lambda *_a, **_k: None)
    module("mock", patch=Patch, Mock=object, MagicMock=object)
    import io

    module("six", text_type=str, StringIO=io.StringIO, moves=module("six.moves", range=range), __path__=[])

    os.chdir(sdist)
    sys.path.insert(0, sdist)
    import tests.text_quotations_test as talon_tests

    for name in sorted(dir(talon_tests)):
        test = getattr(talon_tests, name)
        if not name.startswith("test_") or name == "test_standard_replies" or not callable(test):
            continue
        current["test"] = name
        try:
            test()
        except NotImplementedError:
            pass

    # test_standard_replies: each mail's reply is its NAME_reply_text file, else "Hello".
    standard = "tests/fixtures/standard_replies"
    standard_replies = []
    for name in sorted(os.listdir(standard)):
        if not name.endswith(".eml"):
            continue
        expected = os.path.join(standard, name[:-4] + "_reply_text")
        reply = open(expected, encoding="utf8").read().strip() if os.path.isfile(expected) else "Hello"
        standard_replies.append({"eml": os.path.join(sdist, standard, name), "reply": reply})

    # html_quotations_test.extract_reply_and_check: every client's HTML reply says the same.
    html = "tests/fixtures/html_replies"
    html_replies = [
        {"html": os.path.join(sdist, html, name), "reply": "Hi. I am fine.\n\nThanks,\nAlex"}
        for name in sorted(os.listdir(html))
    ]
    json.dump({"plain": cases, "standard_replies": standard_replies, "html_replies": html_replies}, sys.stdout)


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]))
