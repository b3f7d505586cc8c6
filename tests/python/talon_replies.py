"""The reply and signature cases of Mailgun's talon (its source distribution's tests), as JSON.

talon is the quotation and signature stripper Mailgun runs on the mail it receives; its tests
are replies from real mail clients with the reply talon cuts from each, and messages with the
signature talon finds in each. Mailgun's `stripped-text` is a reply without both.

The quotation cases are read without running talon's quotation code (whose machine-learning
dependencies do not matter here): talon's own test module is imported with
`talon.quotations.extract_from_plain` standing in as a probe, every test function is run, and
each `eq_(expected, extract_from_plain(text))` the test makes is recorded. Tests of talon's
internals (line markers, preprocessing) make no such call and give no case. Each reply is then
passed through talon's real `bruteforce.extract_signature` (pure Python: it needs only `regex`),
which gives the reply without its signature (`unsigned`).

The signature cases are talon's `bruteforce_test` cases, as talon's real code answers them,
and the expectations of its classifier's tests (`extraction_test`: literal cases read with a
probe as above, and the messages of its `stripped` fixtures), which name the sender.

Usage: talon_replies.py SDIST_DIR  (the unpacked talon-1.4.4 source distribution)

Output: {"plain": [{"test", "text", "reply", "unsigned"}...],
         "standard_replies": [{"eml", "reply", "unsigned"}...],   # whole mails from real clients
         "html_replies": [{"html", "reply", "unsigned"}...],      # talon compares them without whitespace
         "signatures": [{"test", "sender", "text", "unsigned"}...]} # sender "" when none
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


CLASSIFIER_TESTS_WITHOUT_CASES = {
    "test_signature_extract_crash",
    "test_handles_unicode",
    "test_mark_lines",
    "test_process_marked_lines",
    "test_messages_longer_SIGNATURE_MAX_LINES",
}


def run_tests(tests, current, skip=(), failing=False):
    """Runs each test function of the module `tests` but those in `skip`. Tests of talon's
    internals fail on the stand-ins (NotImplementedError); with `failing`, so may others."""
    for name in sorted(dir(tests)):
        test = getattr(tests, name)
        if not name.startswith("test_") or name in skip or not callable(test):
            continue
        current["test"] = name
        try:
            test()
        except NotImplementedError:
            pass
        except Exception:
            if not failing:
                raise


def main(sdist):
    cases = []
    current = {"test": None}

    def unavailable(*_args, **_kwargs):
        raise NotImplementedError("a test of talon's internals")

    class Patch:
        """`mock.patch.object` as a decorator that leaves the test as it is."""

        @staticmethod
        def object(*_args, **_kwargs):
            return lambda test: test

    class ExtractProbe(tuple):
        """What the classifier's `extract(body, sender)` returns here: (text, signature) probes."""

        def __new__(cls, body, sender):
            return super().__new__(cls, (Unsigned(body, sender), Signature(body, sender)))

    class Unsigned:
        def __init__(self, body, sender):
            self.body, self.sender = body, sender

    class Signature(Unsigned):
        pass

    signature_cases = {}

    def expect(probe, **expected):
        signature_cases.setdefault((current["test"], probe.body, probe.sender), {}).update(expected)

    def eq_(first, second, _message=None):
        for probe, other in ((second, first), (first, second)):
            if isinstance(probe, Probe) and isinstance(other, str):
                cases.append({"test": current["test"], "text": probe.text, "reply": other})
            elif isinstance(probe, ExtractProbe) and isinstance(other, tuple):
                expect(probe[0], text=other[0], signature=other[1])
            elif isinstance(probe, Unsigned) and not isinstance(probe, Signature) and isinstance(other, str):
                expect(probe, text=other)
            elif isinstance(probe, Signature) and (other is None or isinstance(other, str)):
                expect(probe, signature=other)
            else:
                continue
            return
        assert first == second, (first, second)

    quotations = module(
        "talon.quotations",
        extract_from_plain=Probe,
        extract_from=lambda text, _content_type="text/plain": Probe(text),
        MAX_LINES_COUNT=1000,
        __getattr__=lambda _name: unavailable,
    )
    import io
    import re

    # talon's packages without their __init__ (which loads the classifier): bruteforce is real.
    talon = module("talon", init=lambda: None, quotations=quotations, __path__=[os.path.join(sdist, "talon")])
    talon.signature = module("talon.signature", __path__=[os.path.join(sdist, "talon", "signature")])
    module("talon.utils", get_delimiter=lambda body: (re.search("\r?\n", body) or ["\n"])[0])
    module("nose", __path__=[])
    module("nose.tools", eq_=eq_, ok_=lambda *_a, **_k: None, assert_false=lambda *_a, **_k: None)
    module("mock", patch=Patch, Mock=lambda *_a, **_k: None, MagicMock=lambda *_a, **_k: None)
    module("six", text_type=str, StringIO=io.StringIO, moves=module("six.moves", range=range), __path__=[])
    from talon.signature import bruteforce

    def unsigned(reply):
        return bruteforce.extract_signature(reply)[0]

    os.chdir(sdist)
    sys.path.insert(0, sdist)
    import tests.text_quotations_test as talon_tests

    run_tests(talon_tests, current, skip={"test_standard_replies"})

    for case in cases:
        case["unsigned"] = unsigned(case["reply"])

    # bruteforce_test: every text it gives talon's real code, with talon's real answer. (Its
    # patches do nothing here, so a test that patches talon's limits or breaks talon on
    # purpose fails its own assert; what it gave talon was still answered by talon.)
    signatures = []
    real_extract_signature = bruteforce.extract_signature

    def recording_extract_signature(body):
        answer = real_extract_signature(body)
        signatures.append({"test": current["test"], "sender": "", "text": body, "unsigned": answer[0]})
        return answer

    bruteforce.extract_signature = recording_extract_signature
    import tests.signature.bruteforce_test as bruteforce_tests

    run_tests(bruteforce_tests, current, failing=True)
    bruteforce.extract_signature = real_extract_signature

    # extraction_test: the classifier's expectations, read with a probe; not the test that
    # makes the classifier crash on purpose, those of its internals, nor those of the
    # `stripped` fixtures (read below).
    module("talon.signature.extraction", __getattr__=lambda _name: unavailable)
    talon.signature.extract = ExtractProbe
    module("talon.signature.learning", __path__=[], dataset=module("talon.signature.learning.dataset"))
    import tests.signature.extraction_test as extraction_tests

    run_tests(extraction_tests, current, skip=CLASSIFIER_TESTS_WITHOUT_CASES)
    for (test, body, sender), expected in signature_cases.items():
        text = expected.get("text")
        if text is None and "signature" in expected:
            signature = (expected["signature"] or "").strip()
            text = body.strip()[: len(body.strip()) - len(signature)]
        if text is not None:
            signatures.append({"test": test, "sender": sender, "text": body, "unsigned": text.strip()})
    stripped = "tests/fixtures/signature/emails/stripped"
    for name in sorted(os.listdir(stripped)):
        if not name.endswith("_body"):
            continue
        read = lambda suffix: open(os.path.join(stripped, name[: -len("body")] + suffix), encoding="utf8").read()
        body, signature = read("body"), read("signature")
        text = body.strip()[: len(body.strip()) - len(signature)].strip()
        signatures.append({"test": name[: -len("_body")], "sender": read("sender").strip(), "text": body, "unsigned": text})

    # test_standard_replies: each mail's reply is its NAME_reply_text file, else "Hello".
    standard = "tests/fixtures/standard_replies"
    standard_replies = []
    for name in sorted(os.listdir(standard)):
        if not name.endswith(".eml"):
            continue
        expected = os.path.join(standard, name[:-4] + "_reply_text")
        reply = open(expected, encoding="utf8").read().strip() if os.path.isfile(expected) else "Hello"
        standard_replies.append({"eml": os.path.join(sdist, standard, name), "reply": reply, "unsigned": unsigned(reply)})

    # html_quotations_test.extract_reply_and_check: every client's HTML reply says the same.
    html = "tests/fixtures/html_replies"
    reply = "Hi. I am fine.\n\nThanks,\nAlex"
    html_replies = [
        {"html": os.path.join(sdist, html, name), "reply": reply, "unsigned": unsigned(reply)}
        for name in sorted(os.listdir(html))
    ]
    json.dump(
        {"plain": cases, "standard_replies": standard_replies, "html_replies": html_replies, "signatures": signatures},
        sys.stdout,
    )


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]))
