"""The one multipart form parse both sides use (:mod:`broker.wire.form`)."""

from __future__ import annotations

from broker.wire.form import scan_form_fields

CTYPE = "multipart/form-data; boundary=XyZ"
TEXT = b'--XyZ\r\nContent-Disposition: form-data; name="n"\r\n\r\n2\r\n'
FILE = (
    b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
    b"Content-Type: image/png\r\n\r\n\x89PNG\r\n"
)
PROMPT = b'--XyZ\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nblue \xff\r\n'


def test_a_complete_form_gives_its_text_fields_in_order():
    scan = scan_form_fields(TEXT + FILE + PROMPT + TEXT + b"--XyZ--\r\n", CTYPE)
    assert scan.problem is None
    assert scan.fields == {"n": ["2", "2"], "prompt": ["blue \ufffd"]}  # no file, bytes replaced


def test_an_incomplete_form_names_its_problem_and_keeps_the_parts_read_whole():
    """The gateway bills an edit's ``n`` from the parts read (as today); serve refuses the body."""
    unterminated = scan_form_fields(TEXT + PROMPT, CTYPE)
    assert unterminated.problem == "it does not end with the closing boundary"
    assert unterminated.fields == {"n": ["2"]}  # the prompt part never ended
    assert scan_form_fields(TEXT, "multipart/form-data").problem == (
        "no boundary in its Content-Type"
    )
    garbage = scan_form_fields(b"not a form at all", CTYPE)
    assert garbage.problem and garbage.fields == {}
